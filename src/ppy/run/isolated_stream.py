"""``--isolate`` streams, the parent's side: a :class:`~ppy.app.source.Source` over a worker's pipe.

The worker runs the generator and writes each item as a frame
(:mod:`ppy.run.worker_stream`); like every reply, each frame carries the
request id and the pid of the worker that wrote it, and a frame with another
id or pid (a process forked by the generator) is dropped.  A pull reads one
frame; frames the server does not pull stay in the pipe, so a slow reader
blocks the worker's next write and pauses the generator there (the pipe and
the reader's buffer bound the memory).  Reading a frame is its own task,
shielded from the puller's cancellation, so a deadline or ``rpc.cancel``
never leaves half a frame read.

Stopping early sends the worker a cancel frame and reads (and drops) its
frames until it answers that the generator is closed; a worker that has not
within ``CLOSE_GRACE`` seconds is killed and replaced (with its process
group).  A worker that ended its stream normally goes back to the pool.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ppy.app.function import Function
from ppy.app.source import Pulled
from ppy.errors import InternalError, WorkerCrashed
from ppy.run.procs import describe_exit
from ppy.run.worker import ERROR, RESULT, encode_call, frame, split_reply
from ppy.run.worker_stream import CANCEL, CLOSED, ITEM

log = logging.getLogger("ppy.isolate")

#: How long a worker has to close a cancelled generator before it is killed.
CLOSE_GRACE = 1.0
#: How long a stream may wait for a free worker (the stream's own deadline usually ends it first).
ACQUIRE_S = 24 * 3600.0


class Worker(Protocol):
    """What a stream uses of a :class:`ppy.run.isolated.Worker`."""

    busy: bool
    jobs: int

    @property
    def pid(self) -> int: ...

    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes: ...


class Pool(Protocol):
    """What a stream uses of the :class:`ppy.run.isolated.IsolatedRunner` that owns the workers."""

    crashes: int

    async def _acquire(self, fn: Function, deadline: float, timeout: float) -> Any: ...

    async def _kill(self, worker: Any, reason: str) -> int | None: ...

    def _release(self, worker: Any) -> None: ...

    def _result(self, fn: Function, body: bytes) -> Any: ...

    def _track(self, coro: Any) -> None: ...


class WorkerSource:
    def __init__(self, runner: Pool, fn: Function, payload: bytes, request_id: int) -> None:
        self.runner = runner
        self.fn = fn
        self.method = fn.method
        self.payload = payload
        self.request_id = request_id
        self.worker: Worker | None = None
        self._reading: asyncio.Task[bytes] | None = None
        self._ended = False  # the worker sent R/E (or died): nothing to cancel
        self._closed = False

    async def _frame(self, worker: Worker) -> bytes:
        """The next frame of this stream (kind byte + payload); frames of another request or pid are dropped."""
        while True:
            rid, pid, body = split_reply(await worker.recv())
            if rid == self.request_id and pid == worker.pid:
                return body
            log.warning("isolate: dropped a frame for request %d from pid %d on worker %d's channel "
                        "(streaming request %d)", rid, pid, worker.pid, self.request_id)

    async def pull(self) -> Pulled:
        runner = self.runner
        if self.worker is None:
            loop = asyncio.get_running_loop()
            worker: Worker = await runner._acquire(self.fn, loop.time() + ACQUIRE_S, ACQUIRE_S)
            self.worker = worker
            worker.busy = True
            await worker.send(self.payload)
        worker = self.worker
        if self._reading is None:
            self._reading = asyncio.get_running_loop().create_task(self._frame(worker))
        try:
            body = await asyncio.shield(self._reading)
        except (asyncio.IncompleteReadError, ConnectionError):
            self._ended = True
            runner.crashes += 1
            code = await runner._kill(worker, f"died during {self.method}")
            raise WorkerCrashed(f"the worker process running {self.method} died ({describe_exit(code)}) "
                                "mid-stream; the server replaced it", {"worker_pid": worker.pid}) from None
        self._reading = None
        kind = body[:1]
        if kind == ITEM:
            return Pulled([body[1:]])
        self._ended = True
        worker.busy = False
        worker.jobs += 1
        runner._release(worker)
        if kind == RESULT:
            return Pulled(done=True, result=body[1:])
        if kind == ERROR:
            runner._result(self.fn, body)  # raises the worker's error as a PpyError
        raise InternalError(f"unexpected frame from the isolated worker streaming {self.method}; please report it")

    def close(self) -> None:
        if self._closed or self._ended or self.worker is None:
            self._closed = True
            return
        self._closed = True
        self.runner._track(self._cancel(self.worker))

    async def _cancel(self, worker: Worker) -> None:
        """Ask the worker to close the generator; kill it if it does not within CLOSE_GRACE."""
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await worker.send(frame(CANCEL))
                while True:
                    reading, self._reading = self._reading, None
                    body = await (reading if reading is not None else self._frame(worker))
                    if body[:1] in (CLOSED, RESULT, ERROR):
                        break
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, InternalError):
            log.warning("isolate: worker %d did not close %s's generator within %g s; killing it",
                        worker.pid, self.method, CLOSE_GRACE)
            await self.runner._kill(worker, f"stream of {self.method} did not stop within {CLOSE_GRACE:g} s")
            return
        worker.busy = False
        worker.jobs += 1
        self.runner._release(worker)


def open_worker_source(runner: Pool, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any],
                       request_id: int) -> WorkerSource:
    try:
        payload = encode_call(fn.method, args, kwargs, request_id)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InternalError(f"cannot send the parameters of {fn.method} to an isolated worker ({exc}); "
                            "use JSON-compatible parameter types") from None
    return WorkerSource(runner, fn, payload, request_id)
