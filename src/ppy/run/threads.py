"""In-process runner: ``async def`` on the event loop, blocking functions in a bounded thread pool.

A timeout here only abandons the wait: Python cannot stop a thread, so a
blocking function past its deadline keeps its pool thread until it returns
(use ``--isolate`` to have the work really stopped).  ``BaseException`` from
user code (``sys.exit()``) is caught so it can never take the server down.

Blocking (``def``) functions never run on the event loop thread, so no such
function, however it misbehaves, can stall other connections; ``async def``
functions do run on the loop, as any asyncio code does, and must not block
it.  The cost of the thread hop is
amortised instead (``ppy.run.lane``): the sync calls of one loop turn go to
the pool as one job.  A function whose last call took over ``FAST_S`` gets a
job of its own per call, so slow functions (sleeps, I/O, number crunching)
run side by side exactly as with a plain pool.

A function nobody has called yet is unclassified: its first call runs at once
in a thread of its own, and the calls that arrive while it runs wait for its
verdict, at most ``PROBE_S`` after it started: by then it has returned (it is
measured as usual) or its thread's CPU clock is read from the loop
(``pthread_getcpuclockid``) to tell computing from waiting.  A first burst of
calls that sleep then runs side by side like any later burst, and a first burst
of calls that compute goes to the CPU slots.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import msgspec

from ppy.app.function import Function
from ppy.app.runner import CUT_OFF, CUT_OFF_CANCEL, RunnerStatistics, Settle, application_error
from ppy.app.source import Source
from ppy.errors import CallTimeout
from ppy.run.forksafe import state as _fork
from ppy.run.lane import Expired, SyncLane
from ppy.run.pool import Threads
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
#: How long the first call of an unclassified function runs before the calls that arrived meanwhile are
#: classified by the CPU time its thread used so far.
PROBE_S = 0.01


class _Probe:
    """The first call of a function never measured: where its thread's CPU clock is, and the verdict
    that the function's other calls wait for."""

    __slots__ = ("clock", "cpu0", "started", "timer", "verdict")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.clock: int | None = None  # the CPU clock of the thread running the call (None: not readable)
        self.cpu0 = 0.0
        self.started = 0.0  # perf_counter() when the call started in its thread; 0.0 before
        self.timer: asyncio.TimerHandle | None = None
        self.verdict: asyncio.Future[None] = loop.create_future()


class Speed:
    """What the runner learned about one function's calls; the runner's state, never the app's
    :class:`Function` (pool threads write it: the app layer only describes functions)."""

    __slots__ = ("cpu_bound", "fast")

    def __init__(self) -> None:
        #: Its last call was fast: it may share a pool job with the other calls of its loop turn.
        self.fast = False
        #: Its last slow call spent most of its time computing (thread CPU time against wall time): its
        #: calls queue for a few CPU slots instead of each taking a pool thread.  None until measured.
        self.cpu_bound: bool | None = None


class ThreadRunner:
    isolated = False

    def __init__(self, threads: int, *, debug: bool = False) -> None:
        self.threads = threads
        self.respawn_observers: list[Callable[[float, str], None]] = []  # never called: no processes
        self.pool = Threads(threads, "ppy-call")
        self.lane = SyncLane(self.pool, min(CPU_SLOTS, threads))
        self.debug = debug
        self._probes: dict[str, _Probe] = {}  # method -> the first call of an unclassified function
        self._speeds: dict[str, Speed] = {}  # method -> what its calls so far tell (reset by reload())
        self.abandoned = 0  # async calls that ignored their deadline's cancellation (see Resume)

    async def run(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float) -> Any:
        if fn.is_async:  # the coroutine of run_settled, its outcome raised or returned here
            outcome: list[Any] = []
            await self.run_settled(fn, args, kwargs, timeout, lambda result, error: outcome.extend((result, error)))
            result, error = outcome
            if error is not None:
                raise error
            return result
        try:
            speed = self._speeds.get(fn.method)
            if speed is None:
                speed = self._speeds[fn.method] = Speed()
            cpu_bound = speed.cpu_bound
            if cpu_bound is None:  # never measured: the first call runs at once and tells
                probe = self._probes.get(fn.method)
                if probe is None:
                    return await self._probe(fn, speed, args, kwargs, timeout)
                await asyncio.shield(probe.verdict)  # PROBE_S after the first call started, at most
                cpu_bound = speed.cpu_bound
            return await self.lane.submit(_timed_call, (speed, fn, args, kwargs), alone=not speed.fast,
                                          cpu_bound=bool(cpu_bound), timeout=timeout, key=fn.method,
                                          on_abandon=functools.partial(_waits, speed) if cpu_bound else None)
        except Expired:  # the lane enforces sync calls' deadlines, one timer per batch
            raise _past_deadline(fn, timeout) from None
        except (asyncio.CancelledError, GeneratorExit):  # the task ends, not the function's call
            raise
        except BaseException as exc:
            raise application_error(fn.method, exc, self.debug) from exc

    async def run_settled(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float,
                          settle: Settle) -> None:
        """Run an ``async def`` in the call's own task and settle it (an ``async def`` itself: calling
        it makes the coroutine, no wrapper frame).  The coroutine is stepped once
        first (we are inside the task, so current_task() and contextvars are its own): one that returns
        without waiting needs no deadline timer, which is a third of the cost of a call like
        ``async def hello()``.  Only one that waits runs the rest under ``--timeout``."""
        deadline: asyncio.Timeout | None = None
        try:
            coro = fn.fn(*args, **kwargs)
            try:
                try:
                    waiting = coro.send(None)
                except StopIteration as done:
                    result = done.value
                else:
                    if _fork.child:  # forked on the loop thread: the child must not run the server's loop
                        os._exit(0)
                    async with asyncio.timeout(timeout) as deadline:
                        result = await Resume(coro, waiting, self._abandoned, functools.partial(_imposed, deadline))
            finally:
                if _fork.child:
                    os._exit(0)
        except (asyncio.CancelledError, GeneratorExit):  # the drain deadline passed: still one answer
            settle(None, CallTimeout(CUT_OFF))
            raise
        except BaseException as exc:
            # Only the TimeoutError of our own deadline is -32001; one the function raised itself
            # ("the database did not answer in 2 s") is its error like any other, message and all.
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                settle(None, _past_deadline(fn, timeout))
            else:
                settle(None, application_error(fn.method, exc, self.debug))
        else:
            settle(result, None)

    async def _probe(self, fn: Function, speed: Speed, args: tuple[Any, ...], kwargs: dict[str, Any],
                     timeout: float) -> Any:
        """Run the first call of an unclassified function in a thread of its own, and classify it."""
        loop = asyncio.get_running_loop()
        probe = self._probes[fn.method] = _Probe(loop)
        probe.timer = loop.call_later(PROBE_S, self._judge, fn, speed, probe)
        try:
            return await self.lane.submit(_probed_call, (probe, speed, fn, args, kwargs), alone=True,
                                          timeout=timeout)
        finally:
            self._settle(fn, probe)

    def _judge(self, fn: Function, speed: Speed, probe: _Probe) -> None:
        """Once the first call has run ``PROBE_S``: classify it by its thread's CPU time so far."""
        if probe.verdict.done() or speed.cpu_bound is not None:  # it returned and was measured
            self._settle(fn, probe)
            return
        started = probe.started
        wall = time.perf_counter() - started
        if not started or wall < PROBE_S:  # no thread yet, or too short to tell: look again later
            later = PROBE_S - wall if started else PROBE_S
            probe.timer = asyncio.get_running_loop().call_later(later, self._judge, fn, speed, probe)
            return
        if probe.clock is not None:
            try:
                cpu = time.clock_gettime(probe.clock) - probe.cpu0
            except OSError:  # the thread is gone (the call just ended): its own measure follows
                cpu = None
            if cpu is not None and speed.cpu_bound is None:
                speed.fast = False
                speed.cpu_bound = cpu >= CPU_SHARE * wall
        self._settle(fn, probe)  # not measurable: the waiting calls get threads; the next call probes

    def _settle(self, fn: Function, probe: _Probe) -> None:
        if probe.timer is not None:
            probe.timer.cancel()
        if not probe.verdict.done():
            probe.verdict.set_result(None)
        if self._probes.get(fn.method) is probe:
            del self._probes[fn.method]

    def _abandoned(self, coro: Any) -> None:
        """An ``async def`` kept running after its deadline's cancellation: it is never resumed again.

        It is not closed either, and never freed: closing (now, or when the garbage collector or the
        interpreter's exit finalizes it) throws ``GeneratorExit`` into code that catches everything and
        loops, which would run that loop again, outside any deadline, and could keep the process from
        exiting.  The leak is one suspended frame per abandoned call, each logged and counted.
        """
        self.abandoned += 1
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(coro))
        name = getattr(coro, "__qualname__", "?")
        log.warning("%s caught the cancellation at its deadline and went on waiting; its caller got "
                    "-32001 and the coroutine was abandoned (%d so far). Let CancelledError "
                    "propagate (catch Exception, not BaseException)", name, self.abandoned)

    def start_sync(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float,
                   settle: Settle) -> bool:
        """Run a sync function that was fast last time with no task or future: the lane calls
        ``settle(result, None)`` or ``settle(None, error)`` on the loop when it is done.

        False (nothing started) for an ``async def`` or a function that was slow: the caller then
        awaits :meth:`run`.  A task, a future and three coroutine frames per call were ~40% of the
        server's CPU for ``def hello()`` at 32 x 16 pipelined (docs/performance.md).
        """
        speed = self._speeds.get(fn.method)
        if speed is None or not speed.fast or fn.is_async:
            return False
        self.lane.add(SyncCall(fn, timeout, settle, self.debug), _timed_call, (speed, fn, args, kwargs), timeout)
        return True

    def stream(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Source:
        """[stream hook] A generator function's items, pulled by the front end (ppy.run.streams)."""
        return open_source(fn, args, kwargs, self.pool, self.debug, Resume)

    def close(self) -> None:
        self.pool.close()

    async def start(self) -> None:
        """Threads start on demand: nothing to wait for."""

    async def aclose(self) -> None:
        self.close()

    def reload(self) -> None:
        """Calls look their function up in the dispatcher's new registry: nothing to restart.  What was
        learned about the old code's speed is forgotten (the next call of each function measures it)."""
        self._speeds = {}

    def statistics(self) -> RunnerStatistics:
        return RunnerStatistics("threads", self.threads, 0, self.abandoned)


class SyncCall(msgspec.Struct):
    """A lane outcome that calls back instead of waking a task; maps failures as :meth:`ThreadRunner.run`.
    A ``msgspec.Struct``: one is made per call, and msgspec builds it in C, not by a Python ``__init__``."""

    fn: Function
    timeout: float
    settle: Settle
    debug: bool
    _done: bool = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._done = True
        try:  # _settle(), inlined: this runs once per call
            self.settle(result, None)
        except Exception:  # a bug of ours must not stop the lane delivering the other results
            log.exception("internal error while answering a call of %s", self.fn.method)

    def set_exception(self, exception: BaseException, /) -> None:
        self._done = True
        if isinstance(exception, Expired):
            self._settle(None, _past_deadline(self.fn, self.timeout))
        else:
            self._settle(None, application_error(self.fn.method, exception, self.debug))

    def _settle(self, result: Any, error: BaseException | None) -> None:
        try:
            self.settle(result, error)
        except Exception:  # a bug of ours must not stop the lane delivering the other results
            log.exception("internal error while answering a call of %s", self.fn.method)


def _waits(speed: Speed) -> None:
    """A call holding a CPU slot ran past its deadline: give its function's calls threads again until one
    returns and is measured (see ``SyncLane._abandon``)."""
    speed.cpu_bound = False


def _past_deadline(fn: Function, timeout: float) -> CallTimeout:
    return CallTimeout(f"{fn.method} ran past its {timeout:g} s deadline; make it faster, "
                       "or raise --timeout", {"timeout": timeout})


def _probed_call(probe: _Probe, speed: Speed, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """:func:`_timed_call` for a function's first call, telling the loop where its thread's CPU clock is."""
    try:
        probe.clock = time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):  # not on this platform: classified when it returns
        probe.clock = None
    probe.cpu0 = time.thread_time()
    probe.started = time.perf_counter()  # last: the loop reads the others once this is set
    return _timed_call(speed, fn, args, kwargs)


def _timed_call(speed: Speed, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run in a pool thread, remembering whether the call was fast enough to share a job next time
    and, for a slow one, whether it computed (CPU slots) or waited (a thread of its own)."""
    start = time.perf_counter()
    if speed.fast:  # the common case stays one clock read: thread_time() is a system call
        try:
            return fn.fn(*args, **kwargs)
        finally:
            speed.fast = time.perf_counter() - start < FAST_S
            if _fork.child:  # a child forked by the function returned here too (ppy.run.forksafe)
                os._exit(0)
    cpu = time.thread_time()
    try:
        return fn.fn(*args, **kwargs)
    finally:
        wall = time.perf_counter() - start
        speed.fast = wall < FAST_S
        speed.cpu_bound = time.thread_time() - cpu >= CPU_SHARE * wall
        if _fork.child:
            os._exit(0)


def _imposed(deadline: asyncio.Timeout, cancelled: BaseException) -> bool:
    """Whether a cancellation comes from the server: the call's deadline, or the drain cutting calls off.
    Any other (a TaskGroup cancelling its parent when a child failed) is the function's own business."""
    return deadline.expired() or CUT_OFF_CANCEL in cancelled.args


class Resume:
    """Awaiting this resumes a coroutine whose first step already ran and yielded ``waiting``.

    It hands what the coroutine yields to the task and what the task sends (or throws, such as
    the deadline's cancellation) back to the coroutine, exactly as ``await coro`` would have —
    with one difference: a coroutine that swallows a cancellation the server imposed (``imposed``
    says which: the deadline's or the drain's; a retry loop around ``except BaseException``) and
    waits again is not driven any further.  The cancellation goes on up, so the caller gets its
    -32001 at the deadline and the drain ends on time, and ``on_abandon`` counts the coroutine.  A
    cancellation the function's own code asked for (``asyncio.TaskGroup`` cancels the call's task
    when a child fails, then waits for the other children) is the function's to handle.
    """

    __slots__ = ("coro", "imposed", "on_abandon", "waiting")

    def __init__(self, coro: Any, waiting: Any, on_abandon: Callable[[Any], None] | None = None,
                 imposed: Callable[[BaseException], bool] | None = None) -> None:
        self.coro, self.waiting, self.on_abandon, self.imposed = coro, waiting, on_abandon, imposed

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
                if isinstance(exc, asyncio.CancelledError) and self.on_abandon is not None and (
                        self.imposed is None or self.imposed(exc)):
                    self.on_abandon(coro)
                    raise exc from None
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration as done:
                    return done.value
            if _fork.child:  # the step forked: the child must never run the server's event loop
                os._exit(0)
