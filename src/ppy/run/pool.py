"""The threads that run blocking calls: a bounded pool with no future per job.

``concurrent.futures.ThreadPoolExecutor.submit`` builds a ``Future`` (with its
``Condition`` and ``RLock``), a work item, takes the executor's shutdown lock
and probes an idle semaphore, ~6 µs of event-loop CPU per job.  The lane
(``ppy.run.lane``) never looks at those futures: it delivers results itself.
For a connection-per-call client (the legacy dialect) each call is its own
job, and in py-spy that submit was a third of the event loop's Python time.
Here a job is a tuple on a ``SimpleQueue`` (one C call) and a thread is
started only when more jobs are outstanding than there are threads, up to
``max_threads``, as the executor does.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ppy.call")

#: Linux's SCHED_BATCH for the call threads: a thread woken for a job (or by the GIL) does not preempt
#: the event loop on its core; it runs when the loop waits or its time slice ends.  Without it, each
#: hand-over on a busy core cost two extra context switches: the woken thread preempted the loop,
#: found the GIL taken, and slept again.  Same nice level and CPU share otherwise.
BATCH: int | None = getattr(os, "SCHED_BATCH", None)

Job = tuple[Callable[..., object], tuple[Any, ...]]


class Threads:
    """``submit(fn, *args)`` runs ``fn(*args)`` in one of at most ``max_threads`` threads, in order."""

    def __init__(self, max_threads: int, name: str = "ppy-call") -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.max_threads = max_threads
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._submitted = 0  # jobs ever submitted (changed under _lock)
        self._done = 0  # jobs ever finished (changed under _lock)
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue a job; a thread is started when every thread has a job already."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool is closed")
            self._submitted += 1
            spawn = self._submitted - self._done > len(self._threads) and len(self._threads) < self.max_threads
            if spawn:
                thread = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}")
                self._threads.append(thread)
        self._jobs.put((fn, args))
        if spawn:
            thread.start()

    def _work(self) -> None:
        if BATCH is not None:
            try:  # this thread only (Linux schedules threads): see BATCH
                os.sched_setscheduler(0, BATCH, os.sched_param(0))
            except OSError:  # a container's seccomp policy may refuse it: the default policy then
                pass
        jobs, lock = self._jobs, self._lock
        while True:
            job = jobs.get()
            if job is None:  # close(): one sentinel per thread
                return
            fn, args = job
            try:
                fn(*args)
            except BaseException:  # the lane catches user code's exceptions: this is a bug of ours
                log.exception("internal error in a call thread")
            finally:
                with lock:
                    self._done += 1

    def close(self) -> None:
        """Drop the jobs not started; threads exit once their current job returns (not waited for)."""
        with self._lock:
            self._closed = True
            count = len(self._threads)
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        for _ in range(count):
            self._jobs.put(None)

    @property
    def size(self) -> int:
        """Threads started so far."""
        return len(self._threads)
