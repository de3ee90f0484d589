"""Functions that fail in every way a careless or hostile app can: the server must answer each call
once and give its in-flight slot back whatever they do."""

from __future__ import annotations

import asyncio
import sys
import time


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ raised")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ raised")


class Odd:
    """A result the JSON encoder refuses."""


def ok(x: int = 1) -> int:
    return x


def unprintable() -> None:
    raise Unprintable()


def unprintable_slow() -> None:
    time.sleep(0.002)  # slower than a fast call: runs as a job of its own
    raise Unprintable()


async def aunprintable() -> None:
    await asyncio.sleep(0)
    raise Unprintable()


def nan() -> float:
    return float("nan")


def odd() -> object:
    return Odd()


async def aodd() -> object:
    await asyncio.sleep(0)
    return Odd()


def exits() -> None:
    sys.exit(3)


def own_timeout() -> None:
    raise TimeoutError("database did not answer in 2 s")


async def aown_timeout() -> None:
    await asyncio.sleep(0)
    raise TimeoutError("database did not answer in 2 s")


async def stubborn(seconds: float = 30.0) -> str:
    """Ignores cancellation, as a retry loop around ``except BaseException`` does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.05)
        except BaseException:  # the point of this function
            pass
    return "finished"


async def nap(seconds: float = 0.1) -> float:
    await asyncio.sleep(seconds)
    return seconds
