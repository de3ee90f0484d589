"""In-process runner: ``async def`` on the event loop, blocking functions in a bounded thread pool.

A timeout here only abandons the wait: Python cannot stop a thread, so a
blocking function past its deadline keeps its pool thread until it returns
(use ``--isolate`` to have the work really stopped).  ``BaseException`` from
user code (``sys.exit()``) is caught so it can never take the server down.

User code never runs on the event loop thread, so no function, however it
misbehaves, can stall other connections.  The cost of the thread hop is
amortised instead (``ppy.run.lane``): the sync calls of one loop turn go to
the pool as one job.  A function whose last call took over ``FAST_S`` gets a
job of its own per call, so slow functions (sleeps, I/O, number crunching)
run side by side exactly as with a plain pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ppy.app.dispatch import application_error
from ppy.app.function import Function
from ppy.app.streaming import Source
from ppy.errors import CallTimeout, PpyError
from ppy.run.lane import Expired, SyncLane
from ppy.run.streams import open_source

log = logging.getLogger("ppy.call")

#: A sync call faster than this (seconds) may share a pool job with the other calls of its loop turn.
FAST_S = 0.0005
#: CPU-bound calls running at once per process (``SyncLane`` gate); more only take turns on the GIL.
#: Two keep a core busy while the other slot's result travels back (measured in docs/performance.md).
CPU_SLOTS = 2
#: A slow call is CPU-bound when its thread's CPU time is at least this share of its wall time.  Calls
#: in a full gate share the GIL between CPU_SLOTS threads, so one pure computation reads ~1/CPU_SLOTS;
#: a function that mostly sleeps or waits on I/O reads near 0.
CPU_SHARE = 0.5 / CPU_SLOTS


class ThreadRunner:
    def __init__(self, threads: int, *, debug: bool = False) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ppy-call")
        self.lane = SyncLane(self.pool, min(CPU_SLOTS, threads))
        self.debug = debug

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
            cpu_bound = fn.cpu_bound
            if cpu_bound is None:  # never measured: this call runs at once and tells; calls of the
                fn.cpu_bound = True  # same function arriving before it returns wait for a CPU slot
            return await self.lane.submit(_timed_call, (fn, args, kwargs), alone=not fn.fast,
                                          cpu_bound=bool(cpu_bound), timeout=timeout,
                                          on_abandon=functools.partial(_waits, fn) if cpu_bound else None)
        except Expired:  # the lane enforces sync calls' deadlines, one timer per batch
            raise _past_deadline(fn, timeout) from None
        except TimeoutError:
            if deadline is not None and deadline.expired():
                raise _past_deadline(fn, timeout) from None
            raise application_error(fn.method, TimeoutError(), self.debug) from None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            raise application_error(fn.method, exc, self.debug) from exc

    def start_sync(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float,
                   settle: Callable[[Any, PpyError | None], None]) -> bool:
        """Run a sync function that was fast last time with no task or future: the lane calls
        ``settle(result, None)`` or ``settle(None, error)`` on the loop when it is done.

        False (nothing started) for an ``async def`` or a function that was slow: the caller then
        awaits :meth:`run`.  A task, a future and three coroutine frames per call were ~40% of the
        server's CPU for ``def hello()`` at 32 x 16 pipelined (docs/performance.md).
        """
        if fn.is_async or not fn.fast:
            return False
        self.lane.submit_to(SyncCall(fn, timeout, settle, self.debug), _timed_call, (fn, args, kwargs),
                            timeout=timeout)
        return True

    def stream(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Source:
        """[stream hook] A generator function's items, pulled by the front end (ppy.run.streams)."""
        return open_source(fn, args, kwargs, self.pool, self.debug)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class SyncCall:
    """A lane outcome that calls back instead of waking a task; maps failures as :meth:`ThreadRunner.run`."""

    __slots__ = ("_done", "debug", "fn", "settle", "timeout")

    def __init__(self, fn: Function, timeout: float, settle: Callable[[Any, PpyError | None], None],
                 debug: bool) -> None:
        self.fn, self.timeout, self.settle, self.debug = fn, timeout, settle, debug
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._done = True
        self._settle(result, None)

    def set_exception(self, exception: BaseException, /) -> None:
        self._done = True
        if isinstance(exception, Expired):
            self._settle(None, _past_deadline(self.fn, self.timeout))
        else:
            self._settle(None, application_error(self.fn.method, exception, self.debug))

    def _settle(self, result: Any, error: PpyError | None) -> None:
        try:
            self.settle(result, error)
        except Exception:  # a bug of ours must not stop the lane delivering the other results
            log.exception("internal error while answering a call of %s", self.fn.method)


def _waits(fn: Function) -> None:
    """A call of ``fn`` holding a CPU slot ran past its deadline: give its calls threads again until one
    returns and is measured (see ``SyncLane._abandon``)."""
    fn.cpu_bound = False


def _past_deadline(fn: Function, timeout: float) -> CallTimeout:
    return CallTimeout(f"{fn.method} ran past its {timeout:g} s deadline; make it faster, "
                       "or raise --timeout", {"timeout": timeout})


def _timed_call(fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run in a pool thread, remembering whether the call was fast enough to share a job next time
    and, for a slow one, whether it computed (CPU slots) or waited (a thread of its own)."""
    start = time.perf_counter()
    if fn.fast:  # the common case stays one clock read: thread_time() is a system call
        try:
            return fn.fn(*args, **kwargs)
        finally:
            fn.fast = time.perf_counter() - start < FAST_S
    cpu = time.thread_time()
    try:
        return fn.fn(*args, **kwargs)
    finally:
        wall = time.perf_counter() - start
        fn.fast = wall < FAST_S
        fn.cpu_bound = time.thread_time() - cpu >= CPU_SHARE * wall


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
