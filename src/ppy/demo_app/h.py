"""The seed's demo module, grown a little: try ``ppy call h.hello``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

MAX_TIMES = 1000  # greet(): the reply stays under ~1 MB whatever a client asks
MAX_NAME = 1000

def hello() -> str:
    """Say hello, exactly as the 2013 seed did."""
    return "hello, world."


async def ahello() -> str:
    """The same greeting from an ``async def`` function (runs on the event loop)."""
    return "hello, world."


def greet(name: str = "world", times: int = 1) -> str:
    """Greet someone, ``times`` times (``"2"`` is converted to ``2``; at most 1000 times)."""
    # Capped: without it a 68-byte request asked for a 191 MB reply.
    if not 0 <= times <= MAX_TIMES:
        raise ValueError(f"times must be between 0 and {MAX_TIMES}, got {times}")
    if len(name) > MAX_NAME:
        raise ValueError(f"name must be at most {MAX_NAME} characters, got {len(name)}")
    return " ".join([f"hello, {name}."] * times)


def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def echo(value: object) -> object:
    """Return the value unchanged (any JSON)."""
    return value


def sleep(ms: int = 10) -> int:
    """Block for ``ms`` milliseconds, then return it (a stand-in for slow I/O)."""
    time.sleep(ms / 1000)
    return ms


async def asleep(ms: int = 10) -> int:
    """Wait ``ms`` milliseconds without blocking the server."""
    await asyncio.sleep(ms / 1000)
    return ms


def cpu(n: int = 100000) -> int:
    """Burn CPU: the sum of squares below ``n``."""
    return sum(i * i for i in range(n))


def words(text: str = "streams reach PHP and the browser one word at a time", delay_ms: int = 150) -> Iterator[str]:
    """Yield the words of ``text`` with a pause between them: a stand-in for a model's tokens.

    A generator streams: ``ppy call h.words`` prints each word as it comes, the console shows
    them arriving, PHP gets them from ``$client->stream('h.words')`` (docs/streaming.md).
    """
    for word in text.split():
        time.sleep(delay_ms / 1000)
        yield word


def pid() -> int:
    """The process id serving the call (shows which worker answered)."""
    return os.getpid()
