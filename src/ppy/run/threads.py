"""In-process runner: ``async def`` on the event loop, blocking functions in a bounded thread pool.

A timeout here only abandons the wait: Python cannot stop a thread, so a
blocking function past its deadline keeps its pool thread until it returns
(use ``--isolate`` to have the work really stopped).  ``BaseException`` from
user code (``sys.exit()``) is caught so it can never take the server down.

Sync functions that are proven fast run inline, on the event loop.  A hop to
a pool thread and back costs ~25 µs and a GIL hand-over, far more than a
function like ``hello()`` itself, so it caps a sync function at ~40% of what
the loop could do.  The rule (``--inline-sync``, on by default):

- every sync function starts in the pool, where each call is timed; after
  ``INLINE_PROOF`` calls in a row each under ``INLINE_MAX_S`` (0.5 ms) it
  runs inline, still timed;
- it goes back to the pool, to prove itself again, after two slow inline
  calls in a row, or one that stalled the loop past ``STALL_S`` (20 ms);
  after ``MAX_DEMOTIONS`` such returns it stays in the pool for good (until
  a reload), and each return is logged.

One slow call alone does not send it back: a 1 µs function measures several
ms whenever the OS or the GIL takes the CPU from it mid-call, which says
nothing about the function.  So a function that sleeps, does I/O or crunches
never touches the loop; one that is fast and then turns slow holds the loop
for at most two calls (or one past 20 ms) per return, ``MAX_DEMOTIONS``
times in all; one that is nearly always fast but sometimes blocks for a few
ms does so on the loop.  Servers whose functions may block unpredictably run
with ``--no-inline-sync`` (or make them ``async def``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ppy.app.dispatch import application_error
from ppy.app.function import Function
from ppy.errors import CallTimeout

log = logging.getLogger("ppy.server")

#: A call slower than this (seconds) would delay every other connection noticeably if run on the loop.
INLINE_MAX_S = 0.0005
#: An inline call this long stalled every connection: back to the pool at once.
STALL_S = 0.02
#: Fast calls in a row, in the pool, before a function may run on the loop.
INLINE_PROOF = 16
#: Returns to the pool after which a function never runs on the loop again.
MAX_DEMOTIONS = 8


class ThreadRunner:
    def __init__(self, threads: int, *, debug: bool = False, inline: bool = True) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ppy-call")
        self.debug = debug
        self.inline_enabled = inline

    def inline(self, fn: Function) -> bool:
        """Whether ``fn`` may run on the event loop now (see the module docstring)."""
        return self.inline_enabled and fn.fast_runs >= INLINE_PROOF and fn.demotions < MAX_DEMOTIONS and not fn.is_async

    def run_inline(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn.fn(*args, **kwargs)
        except BaseException as exc:
            raise application_error(fn.method, exc, self.debug) from exc
        finally:
            elapsed = time.perf_counter() - start
            if elapsed <= INLINE_MAX_S:
                fn.slow_last = False
            elif fn.slow_last or elapsed > STALL_S:
                fn.fast_runs, fn.slow_last = 0, False
                fn.demotions += 1
                log.warning("%s took %.1f ms on the event loop; it runs in the thread pool %s "
                            "(--no-inline-sync keeps every sync function there)", fn.method, elapsed * 1000,
                            "from now on" if fn.demotions >= MAX_DEMOTIONS else "until it proves fast again")
            else:
                fn.slow_last = True

    async def run(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float) -> Any:
        deadline: asyncio.Timeout | None = None
        try:
            if fn.is_async:
                # Step the coroutine once ourselves (we are inside the call's task, so current_task()
                # and contextvars are its own): one that returns without waiting needs no deadline
                # timer, which is a third of the cost of a call like `async def hello()`.
                coro = fn.fn(*args, **kwargs)
                try:
                    waiting = coro.send(None)
                except StopIteration as done:
                    return done.value
                async with asyncio.timeout(timeout) as deadline:
                    return await _Rest(coro, waiting)
            async with asyncio.timeout(timeout) as deadline:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.pool, _timed_call, fn, args, kwargs)
        except TimeoutError:
            if deadline is not None and deadline.expired():
                raise CallTimeout(f"{fn.method} ran past its {timeout:g} s deadline; make it faster, "
                                  "or raise --timeout", {"timeout": timeout}) from None
            raise application_error(fn.method, TimeoutError(), self.debug) from None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            raise application_error(fn.method, exc, self.debug) from exc

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _timed_call(fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run in a pool thread, keeping the count of consecutive fast calls that makes ``fn`` inline-able."""
    start = time.perf_counter()
    try:
        return fn.fn(*args, **kwargs)
    finally:
        fn.fast_runs = 0 if time.perf_counter() - start > INLINE_MAX_S else fn.fast_runs + 1


class _Rest:
    """Awaiting this resumes a coroutine whose first step already ran and yielded ``waiting``.

    It hands what the coroutine yields to the task and what the task sends (or throws, such as
    the deadline's cancellation) back to the coroutine, exactly as ``await coro`` would have.
    """

    __slots__ = ("coro", "waiting")

    def __init__(self, coro: Any, waiting: Any) -> None:
        self.coro, self.waiting = coro, waiting

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting = self.coro, self.waiting
        while True:
            try:
                sent = yield waiting
            except BaseException as exc:
                try:
                    waiting = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration as done:
                    return done.value
