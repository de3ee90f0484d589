"""Functions for tests/test_hot_path.py: where a call runs, and async edge cases."""

import asyncio
import threading
import time


def where() -> str:
    """The thread running the call (never MainThread: user code stays off the event loop)."""
    return threading.current_thread().name


def slow_where() -> str:
    """Always over the 0.5 ms fast-call limit, so each call gets a pool job of its own."""
    time.sleep(0.002)
    return threading.current_thread().name


def stall_where(ms: float = 0) -> str:
    """Fast unless told to block: known as fast, then slow once."""
    if ms:
        time.sleep(ms / 1000)
    return threading.current_thread().name


async def timeout_inside() -> bool:
    """asyncio.timeout and current_task() in user code still work when ppy steps the coroutine."""
    async with asyncio.timeout(5):
        await asyncio.sleep(0.001)
    return asyncio.current_task() is not None


async def raises_timeout_at_once() -> None:
    raise TimeoutError("raised by the function itself")


async def yields_twice() -> int:
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return 3


async def hangs() -> None:
    await asyncio.sleep(30)
