"""Process management: the --workers supervisor and --reload."""
