"""The app folder: loading modules safely, the method table, dispatching calls."""
