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

Calls of CPU-bound functions go through a gate of a few slots (``cpu_slots``)
instead of each taking a pool thread: with one GIL, sixteen threads crunching
numbers finish no sooner than two, and every waiting thread wakes every 5 ms
(the GIL's switch interval) to ask for it, preempting the thread that holds
it when all cores are busy.  Queued calls wait in arrival order and run in
the thread of the call that frees the slot (no hop through the loop).

The gate is fair between functions (``key``): a call waits for a slot only
while a call *of its own function* holds one.  A function with no call in the
gate starts at once even when every slot is taken by another function (it
borrows a slot; the gate is over-subscribed by at most one call per such
function until slots come back), and freed slots go round-robin over the
functions that have calls queued.  So a 1 ms computation never queues behind
another function's long ones: it shares the GIL with them instead (each
running thread gets it at least every switch interval, 5 ms).

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
import operator
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

#: How long a batch may hold calls it has not started before they move to another thread.  Short
#: enough to be invisible next to a slow call, long enough that a batch of fast calls never splits.
SPLIT_AFTER_S = 0.002



class Pool(Protocol):
    """Runs ``fn(*args)`` in some thread (``ppy.run.pool.Threads``; a ``ThreadPoolExecutor`` fits too)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> object: ...


class Outcome(Protocol):
    """Where a call's result goes: an ``asyncio.Future``, or an object that calls back (ppy.run.threads)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


Item = tuple[Callable[..., Any], tuple[Any, ...], Outcome, "Deadlines"]


_WHEN = operator.itemgetter(1)  # of a (outcome, loop time it expires) pair


class Expired(Exception):
    """Set on a call's future when its deadline passes before the call finished."""


class Deadlines:
    """The deadlines of one batch's calls and the one timer that enforces them."""

    __slots__ = ("calls", "left", "on_expire", "timer")

    def __init__(self, on_expire: Callable[[], object] | None = None) -> None:
        self.calls: list[tuple[Outcome, float]] = []  # (outcome, loop time it expires)
        self.left = 0  # calls not delivered yet
        self.timer: asyncio.TimerHandle | None = None
        self.on_expire = on_expire  # a gated call gives its CPU slot back when it is abandoned

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """(Re-)arm the timer for the earliest deadline of a call still waiting; none if none waits."""
        due = min((when for fut, when in self.calls if not fut.done()), default=None)
        self.timer = None if due is None else loop.call_at(due, self.expire, loop)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm the timer of a batch as it is submitted: the earliest deadline, found in C without asking
        each call whether it finished (one rarely has by then; if one has, its deadline only makes the
        timer fire early, and :meth:`expire` re-arms it)."""
        due = min(map(_WHEN, self.calls), default=None)
        self.timer = None if due is None else loop.call_at(due, self.expire, loop)

    def expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for fut, when in self.calls:
            if when <= now and not fut.done():
                fut.set_exception(Expired())
                if self.on_expire is not None:
                    self.on_expire()
        self.arm(loop)


class Batch:
    """Calls run one after the other by one pool thread; ``running_since`` is 0.0 between calls."""

    __slots__ = ("items", "key", "running_since", "slot")

    def __init__(self, items: deque[Item], key: object = None) -> None:
        self.items = items
        self.running_since = 0.0
        self.slot = False  # it holds a CPU slot of the gate (changed under the gate's lock)
        self.key = key  # the function it calls: the gate queues a call only behind its own function


class SyncLane:
    def __init__(self, pool: Pool, cpu_slots: int) -> None:
        self.pool = pool
        self._gate_lock = threading.Lock()  # pool threads hand slots over without the loop
        self._gate_free = cpu_slots  # CPU-bound calls that may start now (below 0 while functions borrow)
        self._gate_running: dict[object, int] = {}  # key -> slots its calls hold
        self._gate_queue: dict[object, deque[Batch]] = {}  # key -> calls waiting for a slot, oldest first;
        # keys in round-robin order (a key served moves to the end)
        self._pending: list[Item] = []  # calls of this loop turn, not submitted yet
        self._deadlines = Deadlines()  # those of the calls in _pending
        self._finished: deque[tuple[Outcome, bool, Any, Deadlines]] = deque()  # by pool threads
        self._wake_posted = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], *, alone: bool = False,
               cpu_bound: bool = False, timeout: float | None = None,
               on_abandon: Callable[[], None] | None = None, key: object = None) -> asyncio.Future[Any]:
        """Queue a blocking call; the future resolves with its result or exception (BaseException included),
        or :class:`Expired` once ``timeout`` seconds have passed without a result (waiting included).

        ``alone`` gives the call a pool job of its own (a call known to be slow would only hold up the
        calls batched behind it); with ``cpu_bound`` too, that job waits for a CPU slot, and
        ``on_abandon`` is called if its deadline passes while it holds one; ``key`` names its function for
        the gate's fairness (calls queue only behind calls of the same key).
        """
        fut: asyncio.Future[Any] = (self._loop or asyncio.get_running_loop()).create_future()
        self.submit_to(fut, fn, args, alone=alone, cpu_bound=cpu_bound, timeout=timeout, on_abandon=on_abandon,
                       key=key)
        return fut

    def submit_to(self, fut: Outcome, fn: Callable[..., Any], args: tuple[Any, ...], *, alone: bool = False,
                  cpu_bound: bool = False, timeout: float | None = None,
                  on_abandon: Callable[[], None] | None = None, key: object = None) -> None:
        """:meth:`submit`, settling ``fut`` (called on the event loop thread)."""
        if not alone:
            self.add(fut, fn, args, timeout)
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        batch = Batch(deque(((fn, args, fut, deadlines),)), key)
        deadlines.left = 1
        if timeout is not None:
            deadlines.calls.append((fut, loop.time() + timeout))
        if cpu_bound:
            deadlines.on_expire = lambda: self._abandon(batch, on_abandon)
            self._enter_gate(batch)
        else:
            self.pool.submit(self._run, batch)
        deadlines.arm(loop)

    def add(self, fut: Outcome, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> None:
        """Queue a call to share this loop turn's pool job: :meth:`submit_to` with none of its options,
        positional, which is what runs once per call of a fast sync function."""
        deadlines = self._deadlines
        loop = self._loop
        if not self._pending:
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)
            deadlines = self._deadlines = Deadlines()
        deadlines.left += 1
        if timeout is not None:
            assert loop is not None  # set by the first call of the turn
            deadlines.calls.append((fut, loop.time() + timeout))
        self._pending.append((fn, args, fut, deadlines))

    def _flush(self) -> None:
        items, self._pending = deque(self._pending), []
        assert self._loop is not None
        self._deadlines.start(self._loop)
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

    def _enter_gate(self, batch: Batch) -> None:
        key = batch.key
        with self._gate_lock:
            if self._gate_free <= 0 and self._gate_running.get(key):  # wait behind its own function only
                queue = self._gate_queue.get(key)
                if queue is None:
                    queue = self._gate_queue[key] = deque()
                queue.append(batch)
                return
            self._take_slot(batch)
        self.pool.submit(self._run_gated, batch)

    def _take_slot(self, batch: Batch) -> None:
        """Under the gate's lock: ``batch`` holds a slot (a borrowed one when none is free)."""
        self._gate_free -= 1
        self._gate_running[batch.key] = self._gate_running.get(batch.key, 0) + 1
        batch.slot = True

    def _abandon(self, batch: Batch, on_abandon: Callable[[], None] | None) -> None:
        """A gated call's deadline passed: its slot goes to the next call (a call computing forever must not
        keep it).  If it was running, not queued, ``on_abandon`` hears of it: a call stuck past its deadline
        is more likely waiting (a database that went away) than computing, and more of its kind would
        hold every slot for a whole deadline each."""
        running = batch.slot  # read without the lock: a call ending just now only costs a re-measure
        self._hand_over(batch, in_thread=False)
        if running and on_abandon is not None:
            on_abandon()

    def _run_gated(self, batch: Batch | None) -> None:
        """In a pool thread holding a CPU slot: run the batch, then the calls queued for a slot."""
        while batch is not None:
            self._run(batch)
            batch = self._hand_over(batch, in_thread=True)

    def _hand_over(self, batch: Batch, *, in_thread: bool) -> Batch | None:
        """Pass ``batch``'s CPU slot to the oldest queued call, or free it.

        Called when the batch's call returned (``in_thread``: the returning thread runs the next call
        itself) or when its deadline passed (from the loop, :meth:`_abandon`: the next call gets a thread
        of its own).  Only the first of the two passes the slot on.
        """
        with self._gate_lock:
            if not batch.slot:
                return None
            batch.slot = False
            self._gate_free += 1
            key = batch.key
            left = self._gate_running[key] - 1
            if left:
                self._gate_running[key] = left
            else:
                del self._gate_running[key]
            queues = self._gate_queue
            if self._gate_free > 0 and queues:
                key = next(iter(queues))  # round-robin: the function served longest ago
            elif left or key not in queues:  # over-subscribed: only a function left with no call running
                return None  # may borrow (its queue is non-empty only while one of its calls ran)
            queue = queues.pop(key)
            nxt = queue.popleft()
            if queue:
                queues[key] = queue  # to the end of the round
            self._take_slot(nxt)
        if in_thread:
            return nxt
        self.pool.submit(self._run_gated, nxt)
        return None

    def _run(self, batch: Batch) -> None:
        """In a pool thread: run calls until the batch is empty (the watchdog may take some away)."""
        items = batch.items
        while True:
            try:
                fn, args, fut, deadlines = items.popleft()
            except IndexError:
                return
            if fut.done():  # its deadline passed while it waited: the client has its -32001 already
                outcome: tuple[Outcome, bool, Any, Deadlines] = (fut, False, Expired(), deadlines)
            else:
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
            deadlines.left -= 1  # the batch's last call cancels its timer
            if not deadlines.left and deadlines.timer is not None:
                deadlines.timer.cancel()
                deadlines.timer = None
            if fut.done():  # the caller gave up (deadline) while the call ran
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
