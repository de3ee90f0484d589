"""Functions for the HTTP route tests: typed params, errors of every kind, slow calls."""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass


@dataclass
class Point:
    x: int
    y: int


def hello() -> str:
    """Say hello."""
    return "hello, world."


def typed(n: int, ratio: float, flag: bool, name: str, tags: list[str], day: datetime.date) -> dict[str, object]:
    """Echo typed params back with their Python type names, to check query-string conversion."""
    values = {"n": n, "ratio": ratio, "flag": flag, "name": name, "tags": tags, "day": day}
    return {k: [v if not isinstance(v, datetime.date) else v.isoformat(), type(v).__name__]
            for k, v in values.items()}


def nums(xs: list[int]) -> int:
    """Sum a list of ints."""
    return sum(xs)


def where(p: Point) -> int:
    """A dataclass parameter (JSON object in a query string)."""
    return p.x * 10 + p.y


def anything(value=None):  # type: ignore[no-untyped-def]
    """Unannotated: query values are JSON where they parse, else text."""
    return [value, type(value).__name__]


def boom() -> None:
    """Raise an application error."""
    raise ValueError("boom went the function")


def odd() -> object:
    """Return something JSON cannot carry (internal error)."""
    return object()


async def slow(seconds: float = 1.0) -> float:
    """Wait without blocking the server."""
    await asyncio.sleep(seconds)
    return seconds
