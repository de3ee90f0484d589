"""Runners: where a bound call actually executes (threads, or isolated processes)."""
