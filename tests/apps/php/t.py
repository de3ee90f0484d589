"""Functions the PHP client's tests call (tests/test_php_client.py runs them through phpunit)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from enum import Enum

_notes: dict[str, object] = {}


class Color(Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Point:
    x: int
    y: int
    label: str = ""


def echo(value: object) -> object:
    """Return the value unchanged."""
    return value


def echo_args(*args: object, **kwargs: object) -> dict[str, object]:
    """Show how the arguments arrived: positional as a list, keyword as an object."""
    return {"args": list(args), "kwargs": kwargs}


def greet(name: str, punctuation: str = "!") -> str:
    """Greet someone by name."""
    return f"hello, {name}{punctuation}"


def add(a: int, b: int) -> int:
    """Add two integers (strings like "2" are converted)."""
    return a + b


def scale(p: Point, factor: float = 2.0) -> Point:
    """Scale a point.

    The dataclass comes in as a JSON object and goes back out as one.
    """
    return Point(int(p.x * factor), int(p.y * factor), p.label)


def paint(color: Color, names: list[str] | None = None) -> str:
    """Paint names in a color."""
    return f"{color.value}:{','.join(names or [])}"


def maybe(n: int | None = None) -> int | None:
    """Return n, or None."""
    return n


def nothing() -> None:
    """Return nothing at all."""


def blob(n: int) -> str:
    """A string of n bytes ('x' repeated)."""
    return "x" * n


def size(value: str) -> int:
    """The UTF-8 byte length of a string."""
    return len(value.encode("utf-8"))


def fail(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


def nan() -> float:
    """A result JSON cannot carry (an internal error)."""
    return float("nan")


def sleep(seconds: float) -> float:
    """Block for `seconds`, then return it."""
    time.sleep(seconds)
    return seconds


async def asleep(seconds: float) -> float:
    """Wait `seconds` without blocking the server."""
    await asyncio.sleep(seconds)
    return seconds


def note(key: str, value: object) -> None:
    """Remember a value (notifications use this to leave a trace)."""
    _notes[key] = value


def noted(key: str) -> object:
    """A value remembered by note(), or None."""
    return _notes.get(key)


def pid() -> int:
    """The server's process id (changes when the server restarts)."""
    return os.getpid()
