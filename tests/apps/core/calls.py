"""Functions that misbehave on purpose, for the hostile-input, limit and shutdown tests."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any


def echo(*args: Any, **kwargs: Any) -> Any:
    """Return what was sent: the positional list, or the keyword object."""
    return kwargs if kwargs else list(args)


def raises(message: str = "it went wrong") -> None:
    """Raise a LookupError carrying ``message``."""
    raise LookupError(message)


class Opaque:
    """Not JSON-encodable by any rule of docs/app-folder.md."""


def unencodable() -> Any:
    return Opaque()


def nan() -> float:
    return float("nan")


def infinity_inside() -> list[float]:
    return [1.0, float("inf")]


def hang(seconds: float = 20.0) -> str:
    """Block a pool thread far past the test server's --timeout (bounded, so it ends eventually)."""
    time.sleep(seconds)
    return "finished"


async def ahang(seconds: float = 3600.0) -> str:
    """Await far past --timeout on the event loop (cancellable)."""
    await asyncio.sleep(seconds)
    return "finished"


def exits(code: int = 3) -> None:
    """Try to stop the whole server process."""
    sys.exit(code)


def sleep(seconds: float) -> float:
    """Block for ``seconds`` and return it."""
    time.sleep(seconds)
    return seconds


async def asleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def big(size: int, delay: float = 0.0) -> str:
    """A string of ``size`` ASCII bytes, after ``delay`` seconds."""
    time.sleep(delay)
    return "x" * size


def _private() -> str:
    return "private: must never be callable"
