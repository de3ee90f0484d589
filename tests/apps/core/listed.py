"""A module with __all__: only the listed public functions are exposed."""

__all__ = ["_hidden_but_listed", "missing_name", "shown"]  # noqa: F822 - a listed name that is not defined


def shown() -> str:
    return "shown"


def unlisted() -> str:
    return "must not be callable: not in __all__"


def _hidden_but_listed() -> str:
    return "must not be callable: starts with _"
