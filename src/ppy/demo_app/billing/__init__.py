"""Packages work too: entries are dotted paths like ``billing.invoice``."""
