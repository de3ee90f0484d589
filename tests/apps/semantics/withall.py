"""``__all__`` restricts exposure to the names it lists (and still only functions defined here)."""

from os import getcwd

__all__ = ["shown", "_hidden_anyway", "Thing", "getcwd", "NUMBER", "missing"]  # noqa: RUF022, F822

NUMBER = 7


def shown():
    return "shown"


def not_listed():
    return "not listed"


def _hidden_anyway():
    return "private even when listed"


class Thing:
    pass
