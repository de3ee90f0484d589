"""Generators for the streaming tests: finite, infinite, failing, slow, async; a marker file shows their
``finally`` ran (``mark``: a path the test polls)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Generator, Iterator


def _touch(mark: str, text: str) -> None:
    if mark:
        with open(mark, "w") as f:
            f.write(text)


def count(n: int = 5) -> Generator[int, None, str]:
    """Yield 0..n-1, then return a summary."""
    yield from range(n)
    return f"counted {n}"


async def acount(n: int = 5, delay: float = 0.0) -> AsyncIterator[int]:
    """The async twin of count (no return value: async generators have none)."""
    for i in range(n):
        if delay:
            await asyncio.sleep(delay)
        yield i


def words(text: str = "the quick brown fox", delay: float = 0.01) -> Iterator[str]:
    for word in text.split():
        time.sleep(delay)
        yield word


def fails_after(n: int = 3) -> Iterator[int]:
    """n items, then an exception."""
    yield from range(n)
    raise ValueError(f"gave up after {n}")


async def afails_after(n: int = 3) -> AsyncIterator[int]:
    for i in range(n):
        yield i
    raise ValueError(f"gave up after {n}")


def forever(mark: str = "", size: int = 100, delay: float = 0.0) -> Iterator[str]:
    """Never ends; writes ``mark`` in its finally (GeneratorExit when the stream stops)."""
    payload = "x" * size
    try:
        while True:
            if delay:
                time.sleep(delay)
            yield payload
    finally:
        _touch(mark, f"closed {os.getpid()}")


async def aforever(mark: str = "", size: int = 100, delay: float = 0.0) -> AsyncIterator[str]:
    payload = "x" * size
    try:
        while True:
            await asyncio.sleep(delay)
            yield payload
    finally:
        _touch(mark, f"closed {os.getpid()}")


def big(n: int = 1000, size: int = 1000) -> Iterator[str]:
    for _ in range(n):
        yield "y" * size


def odd() -> Iterator[object]:
    yield 1
    yield object()


def plain() -> str:
    return "not a generator"


def crash_after(n: int = 1) -> Iterator[int]:
    """n items, then the process dies (for --isolate: -32004 after the items)."""
    yield from range(n)
    os._exit(3)
