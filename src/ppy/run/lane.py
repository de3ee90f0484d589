"""Batched hand-off of blocking calls to the thread pool: the thread hop, amortised.

Submitting each sync call to a ``ThreadPoolExecutor`` costs a pool future, a
queue put, a thread wake-up and a loop wake-up per call (~25 µs, more than
``def hello()`` itself).  The lane instead collects the sync calls that arrive
in one event-loop turn and submits them as *one* job; a pool thread runs them
one after the other and posts results back, waking the loop once for all the
results ready at that moment.

The event loop never runs user code here, so a slow or hung function can
never stall other connections.  What batching could cost instead — a fast
call stuck behind a slow one in the same batch — is bounded by a watchdog:
once the call a batch is running has taken ``SPLIT_AFTER_S``, every call of
the batch not started yet moves to a job of its own, exactly as if each had
been submitted alone.  A batch merely waiting for the GIL or a free thread is
left whole: splitting it would only multiply hops when the server is busiest.

Deadlines are the lane's too: the calls of one batch share one timer (they
arrived in the same loop turn, so their deadlines are nearly equal), set when
the batch starts and cancelled when its last call is delivered.  A call past
its deadline has :class:`Expired` set on its future.  An ``asyncio.timeout``
around each call cost ~8 µs a call in the 32 x 16 pipelined benchmark (a
timer in the loop's heap and a ``Timeout`` object per call, for 512 calls in
flight), more than the batched hop itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

#: How long a batch may hold calls it has not started before they move to another thread.  Short
#: enough to be invisible next to a slow call, long enough that a batch of fast calls never splits.
SPLIT_AFTER_S = 0.002

Item = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", "Deadlines"]


class Expired(Exception):
    """Set on a call's future when its deadline passes before the call finished."""


class Deadlines:
    """The deadlines of one batch's calls and the one timer that enforces them."""

    __slots__ = ("calls", "left", "timer")

    def __init__(self) -> None:
        self.calls: list[tuple[asyncio.Future[Any], float]] = []  # (future, loop time it expires)
        self.left = 0  # calls not delivered yet
        self.timer: asyncio.TimerHandle | None = None

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """(Re-)arm the timer for the earliest deadline of a call still waiting; none if none waits."""
        due = min((when for fut, when in self.calls if not fut.done()), default=None)
        self.timer = None if due is None else loop.call_at(due, self.expire, loop)

    def expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for fut, when in self.calls:
            if when <= now and not fut.done():
                fut.set_exception(Expired())
        self.arm(loop)

    def delivered(self) -> None:
        self.left -= 1
        if not self.left and self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Batch:
    """Calls run one after the other by one pool thread; ``running_since`` is 0.0 between calls."""

    __slots__ = ("items", "running_since")

    def __init__(self, items: deque[Item]) -> None:
        self.items = items
        self.running_since = 0.0


class SyncLane:
    def __init__(self, pool: Executor) -> None:
        self.pool = pool
        self._pending: list[Item] = []  # calls of this loop turn, not submitted yet
        self._deadlines = Deadlines()  # those of the calls in _pending
        self._finished: deque[tuple[asyncio.Future[Any], bool, Any, Deadlines]] = deque()  # by pool threads
        self._wake_posted = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], *, alone: bool = False,
               timeout: float | None = None) -> asyncio.Future[Any]:
        """Queue a blocking call; the future resolves with its result or exception (BaseException included),
        or :class:`Expired` once ``timeout`` seconds have passed without a result.

        ``alone`` gives the call a pool job of its own at once (a call known to be slow would only hold
        up the calls batched behind it).
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if alone:
            deadlines = Deadlines()
            self._add(deadlines, fut, loop, timeout)
            deadlines.arm(loop)
            self.pool.submit(self._run, Batch(deque(((fn, args, fut, deadlines),))))
            return fut
        deadlines = self._deadlines
        if not self._pending:
            loop.call_soon(self._flush)
            deadlines = self._deadlines = Deadlines()
        self._add(deadlines, fut, loop, timeout)
        self._pending.append((fn, args, fut, deadlines))
        return fut

    @staticmethod
    def _add(deadlines: Deadlines, fut: asyncio.Future[Any], loop: asyncio.AbstractEventLoop,
             timeout: float | None) -> None:
        deadlines.left += 1
        if timeout is not None:
            deadlines.calls.append((fut, loop.time() + timeout))

    def _flush(self) -> None:
        items, self._pending = deque(self._pending), []
        assert self._loop is not None
        self._deadlines.arm(self._loop)
        self._start(Batch(items))

    def _start(self, batch: Batch) -> None:
        self.pool.submit(self._run, batch)
        if len(batch.items) > 1:
            assert self._loop is not None
            self._loop.call_later(SPLIT_AFTER_S, self._watch, batch)

    def _watch(self, batch: Batch) -> None:
        if not batch.items:
            return
        since = batch.running_since
        if not since or time.monotonic() - since < SPLIT_AFTER_S:
            assert self._loop is not None
            self._loop.call_later(SPLIT_AFTER_S, self._watch, batch)
            return
        while True:  # the running call is slow: give each waiting call a job of its own
            try:  # deque.popleft is atomic: each call is taken by exactly one thread
                item = batch.items.popleft()
            except IndexError:
                return
            self.pool.submit(self._run, Batch(deque((item,))))

    def _run(self, batch: Batch) -> None:
        """In a pool thread: run calls until the batch is empty (the watchdog may take some away)."""
        items = batch.items
        while True:
            try:
                fn, args, fut, deadlines = items.popleft()
            except IndexError:
                return
            batch.running_since = time.monotonic()
            try:
                outcome = (fut, True, fn(*args), deadlines)
            except BaseException as exc:  # sys.exit() in user code must not kill the thread
                outcome = (fut, False, exc, deadlines)
            batch.running_since = 0.0
            self._finished.append(outcome)
            # Append first, then look at the flag; the loop clears the flag before draining, so a result
            # is either drained by a wake-up already posted or posts a new one.
            if not self._wake_posted:
                self._wake_posted = True
                assert self._loop is not None
                try:
                    self._loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop closed (server exiting): nobody waits for the result
                    return

    def _deliver(self) -> None:
        self._wake_posted = False
        finished = self._finished
        while finished:
            fut, ok, value, deadlines = finished.popleft()
            deadlines.delivered()
            if fut.done():  # the caller gave up (deadline) while the call ran
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
