"""Signatures that stress `ppy stubs php`: positional-only, keyword-only, **kwargs, odd names and defaults."""

from __future__ import annotations

import datetime


def pos_only(a: int, b: int = 2, /) -> list[int]:
    """Positional-only parameters: sent as a JSON array."""
    return [a, b]


def kw_only(first: int = 1, *, label: str, scale: int = 10) -> str:
    """A required keyword-only parameter after an optional one."""
    return f"{label}:{first * scale}"


def var_kw(name: str, **extra: int) -> dict[str, int | str]:
    """Extra keyword arguments, converted to int."""
    return {"name": name, **extra}


def reserved(this: str, __ppyParams: str = "p") -> str:  # names that clash in PHP
    """Parameter names that are special in PHP."""
    return this + __ppyParams


def day(when: datetime.date = datetime.date(2020, 1, 2)) -> str:
    """A default JSON cannot show: left out unless given. */ not a comment end."""
    return when.isoformat()


def both(*values: int, key: str) -> str:
    """Variadic plus a required keyword-only parameter: the caller passes params itself."""
    return f"{key}={sum(values)}"
