"""``--isolate``: calls run in a supervised pool of single-call worker processes.

The model is RoadRunner's PHP worker pool (``max_jobs``, ``exec_ttl``,
``max_worker_memory``), not :class:`concurrent.futures.ProcessPoolExecutor`,
which marks the whole pool "broken" when one process dies.  Here each worker
is its own small state machine, so a death costs exactly one call:

* the server binds and converts the parameters first (invalid params never
  reach a worker), then sends the call as JSON (never pickle) over the
  worker's pipes (:mod:`ppy.run.worker` describes the frames);
* a call past its deadline is answered -32001 *after* its worker was killed
  and reaped, so the work really stopped when the client hears about it;
* a worker that dies mid-call (segfault, ``os._exit``, the OOM killer, or an
  RSS past ``--max-worker-memory``, checked every 50 ms while it runs) fails
  that call with -32004;
* ``--max-jobs N`` retires a worker after N calls (±10% jitter, so a pool does
  not recycle all at once); a worker over the memory limit after a call is
  retired too;
* each worker leads its own process group (``start_new_session``); a timeout, crash
  or recycle kills the whole group, so a ``subprocess`` a call started dies with it;
* every retired or dead worker is replaced in the background; start-up
  failures back off exponentially (never a fork loop);
* callers wait for a free worker in FIFO order (``asyncio.Queue``); the
  dispatcher's ``--max-inflight`` bounds that queue.

Respawn durations are kept in :attr:`IsolatedRunner.respawns` and passed to
:attr:`IsolatedRunner.respawn_observers` (the metrics histogram) and the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ppy.app.function import Function
from ppy.app.runner import RunnerStatistics, Settle
from ppy.app.source import Source
from ppy.errors import ERROR_BY_CODE, ApplicationError, CallTimeout, InternalError, PpyError, WorkerCrashed
from ppy.run.isolated_stream import open_worker_source
from ppy.run.procs import describe_exit, kill_group
from ppy.run.worker import ERROR, HEADER, RESULT, encode_call, split_reply

log = logging.getLogger("ppy.isolate")

START_TIMEOUT = 60.0  # importing a big app (models, pandas) can take a while; past this it is stuck
MEMORY_POLL = 0.05  # how often a running call's RSS is checked when --max-worker-memory is set
REAP_GRACE = 5.0  # a retired worker gets this long to exit after EOF before it is killed
MAX_BACKOFF = 10.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class WorkerStartError(Exception):
    pass


class WorkerTraceback(Exception):
    """The worker's traceback text, chained to the error so the server log shows where it failed."""

    def __str__(self) -> str:
        return "traceback from the isolated worker:\n" + str(self.args[0]).rstrip()


@dataclass(eq=False)
class Worker:
    proc: asyncio.subprocess.Process
    generation: int
    max_jobs: int  # 0: unlimited
    jobs: int = 0
    busy: bool = False
    retired: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(self, data: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(data)
        await stdin.drain()

    async def recv(self) -> bytes:
        """One frame; IncompleteReadError when the worker is gone."""
        stdout = self.proc.stdout
        assert stdout is not None
        (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
        return await stdout.readexactly(size) if size else b""

    def rss_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * _PAGE / (1024 * 1024)
        except (OSError, IndexError, ValueError):
            return None  # not Linux, or already gone


class _Deadline(Exception):
    pass


class _OverMemory(Exception):
    pass


class IsolatedRunner:
    isolated = True

    def __init__(self, app_dir: Path, *, size: int, max_jobs: int = 0, max_memory_mb: int = 0,
                 debug: bool = False, import_timeout: float | None = None) -> None:
        self.app_dir = Path(app_dir)
        self.size = size
        self.max_jobs = max_jobs
        self.max_memory_mb = max_memory_mb
        self.debug = debug
        self.import_timeout = import_timeout
        self.generation = 0
        self.workers: set[Worker] = set()
        self.idle: asyncio.Queue[Worker] = asyncio.Queue()
        self.respawns: deque[float] = deque(maxlen=4096)  # seconds from a worker's end to its replacement's ready
        self.respawn_observers: list[Callable[[float, str], None]] = []
        self.crashes = 0
        self.timeouts = 0
        self.recycled = 0
        self._failures = 0  # consecutive start failures or idle deaths: drives the back-off
        self._closing = False
        self._next_id = 0  # request ids: a reply must carry its request's id and its worker's pid
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the whole pool before the server accepts calls; raise RuntimeError if it cannot."""
        results = await asyncio.gather(*(self._spawn() for _ in range(self.size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for r in results:
            if isinstance(r, Worker):
                self.idle.put_nowait(r)
        if errors:
            await self.aclose()
            raise RuntimeError(f"--isolate: a worker process failed to start: {errors[0]}; "
                               "see its error output above")
        log.info("isolate: %d workers ready (pids %s)", self.size, " ".join(str(w.pid) for w in self.workers))

    def start_sync(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float,
                   settle: Settle) -> bool:
        """Every call is awaited through :meth:`run` (its worker's reply is read by a task anyway)."""
        return False

    def run_settled(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float,
                    settle: Settle) -> None:
        """None: the dispatcher's task awaits :meth:`run` (a worker runs ``async def`` functions too)."""
        return None

    def stream(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Source:
        """[stream hook] A generator's items from a worker, as they come (ppy.run.isolated_stream)."""
        self._next_id += 1
        return open_worker_source(self, fn, args, kwargs, self._next_id)

    def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for worker in list(self.workers):
            worker.retired = True
            kill_group(worker.proc)

    async def aclose(self) -> None:
        procs = [w.proc for w in self.workers]
        self.close()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), REAP_GRACE)
            except (TimeoutError, ProcessLookupError):
                pass
        self.workers.clear()

    def reload(self) -> None:
        """New code on disk: idle workers are replaced now, busy ones after their current call."""
        self.generation += 1
        while not self.idle.empty():
            self._retire(self.idle.get_nowait(), "app code reloaded")

    @property
    def busy(self) -> int:
        return sum(1 for w in self.workers if w.busy)

    def statistics(self) -> RunnerStatistics:
        return RunnerStatistics("isolate", self.size, self.busy, 0, self.timeouts, self.crashes, self.recycled)

    # -- one call -------------------------------------------------------------------------

    async def run(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float) -> Any:
        self._next_id += 1
        request_id = self._next_id
        try:
            payload = encode_call(fn.method, args, kwargs, request_id)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InternalError(f"cannot send the parameters of {fn.method} to an isolated worker ({exc}); "
                                "use JSON-compatible parameter types") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        worker = await self._acquire(fn, deadline, timeout)
        worker.busy = True
        try:
            body = await self._exchange(worker, payload, deadline, request_id)
        except _Deadline:
            self.timeouts += 1
            code = await self._kill(worker, f"{fn.method} ran past its {timeout:g} s deadline")
            raise CallTimeout(f"{fn.method} ran past its {timeout:g} s deadline; its worker process was "
                              "stopped and replaced. Make it faster, or raise --timeout",
                              {"timeout": timeout, "worker_pid": worker.pid,
                               "exit": describe_exit(code, ours=True)}) from None
        except _OverMemory as over:
            self.crashes += 1
            code = await self._kill(worker, f"over --max-worker-memory during {fn.method}")
            raise WorkerCrashed(f"the worker running {fn.method} grew past --max-worker-memory "
                                f"{self.max_memory_mb} MB (RSS {over.args[0]:.0f} MB) and was stopped; the "
                                "server replaced it. Use less memory per call, or raise the limit",
                                {"worker_pid": worker.pid, "rss_mb": round(over.args[0]),
                                 "exit": describe_exit(code, ours=True)}) from None
        except (asyncio.IncompleteReadError, ConnectionError):
            self.crashes += 1
            code = await self._kill(worker, f"died during {fn.method}")
            raise WorkerCrashed(f"the worker process running {fn.method} died ({describe_exit(code)}); the "
                                "server replaced it. Look for crashes in the function (a C extension, "
                                "os._exit, memory)", {"worker_pid": worker.pid, "exit": describe_exit(code)}) from None
        except BaseException:  # cancelled (drain deadline, shutdown): the worker's state is unknown
            self._retire(worker, f"call to {fn.method} was cancelled", kill=True)
            raise
        worker.busy = False
        worker.jobs += 1
        self._failures = 0
        self._release(worker)
        return self._result(fn, body)

    async def _acquire(self, fn: Function, deadline: float, timeout: float) -> Worker:
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    worker = await self.idle.get()
                    if worker.retired or worker.proc.returncode is not None:
                        continue  # died while idle; its watcher is replacing it
                    if worker.generation != self.generation:
                        self._retire(worker, "app code reloaded")
                        continue
                    return worker
        except TimeoutError:
            raise CallTimeout(f"{fn.method} waited {timeout:g} s for a free worker (all {self.size} busy); "
                              "raise --pool-size or --timeout", {"timeout": timeout}) from None

    async def _exchange(self, worker: Worker, payload: bytes, deadline: float, request_id: int) -> bytes:
        loop = asyncio.get_running_loop()
        await worker.send(payload)
        reply = loop.create_task(self._reply(worker, request_id))
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise _Deadline
                wait = min(remaining, MEMORY_POLL) if self.max_memory_mb else remaining
                done, _ = await asyncio.wait({reply}, timeout=wait)
                if done:
                    return reply.result()
                rss = worker.rss_mb() if self.max_memory_mb else None
                if rss is not None and rss > self.max_memory_mb:
                    raise _OverMemory(rss)
        finally:
            if not reply.done():
                reply.cancel()

    @staticmethod
    async def _reply(worker: Worker, request_id: int) -> bytes:
        """The reply to ``request_id`` written by the worker itself (kind byte + body); any other is dropped
        (a process forked by a function could otherwise answer someone else's call)."""
        while True:
            rid, pid, body = split_reply(await worker.recv())
            if rid == request_id and pid == worker.pid:
                return body
            log.warning("isolate: dropped a reply for request %d from pid %d on worker %d's channel "
                        "(expected request %d from pid %d)", rid, pid, worker.pid, request_id, worker.pid)

    def _result(self, fn: Function, body: bytes) -> Any:
        kind, data = body[:1], body[1:]
        if kind == RESULT:
            return msgspec.json.decode(data)
        if kind != ERROR:
            raise InternalError(f"unexpected reply from the isolated worker for {fn.method}; please report it")
        doc = msgspec.json.decode(data)
        code, message, extra = doc.get("code"), doc.get("message", ""), doc.get("data") or {}
        cls = ERROR_BY_CODE.get(code, InternalError)
        if cls is ApplicationError:
            extra = {"type": extra.get("type", "Exception")}
            if self.debug:
                extra["traceback"] = doc.get("traceback", "")
        err: PpyError = cls(message, extra)
        err.__cause__ = WorkerTraceback(doc.get("traceback", ""))
        raise err

    # -- supervision -------------------------------------------------------------------------

    async def _spawn(self) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ppy.run.worker", str(self.app_dir),
            *([] if self.import_timeout is None else [str(self.import_timeout)]),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, start_new_session=True)
        limit = self.max_jobs + round(self.max_jobs * random.uniform(-0.1, 0.1)) if self.max_jobs else 0
        worker = Worker(proc, self.generation, max(limit, 1) if self.max_jobs else 0)
        try:
            hello = msgspec.json.decode(await asyncio.wait_for(worker.recv(), START_TIMEOUT))
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, msgspec.DecodeError):
            kill_group(proc)
            code = await proc.wait()
            raise WorkerStartError(f"worker pid {proc.pid} ended before it was ready ({describe_exit(code)})") \
                from None
        except BaseException:
            kill_group(proc)
            raise
        if hello.get("failed"):
            log.debug("isolate: worker %d could not import %s", proc.pid, ", ".join(hello["failed"]))
        self.workers.add(worker)
        self._track(self._watch(worker))
        return worker

    def _track(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, worker: Worker) -> None:
        """Notice a worker that dies while idle (OOM killer, kill -9) and replace it."""
        code = await worker.proc.wait()
        kill_group(worker.proc)  # what it started goes with it
        if not worker.busy and not worker.retired:
            self._failures += 1  # dying without a call to blame counts towards the back-off
            self._retire(worker, f"died while idle ({describe_exit(code)})")

    async def _kill(self, worker: Worker, reason: str) -> int | None:
        """Kill and reap a worker (so its pid is gone before the caller answers), then replace it."""
        self._retire(worker, reason, kill=True)
        try:
            return await asyncio.wait_for(asyncio.shield(worker.proc.wait()), REAP_GRACE)
        except TimeoutError:
            return worker.proc.returncode

    def _release(self, worker: Worker) -> None:
        reason = None
        if worker.max_jobs and worker.jobs >= worker.max_jobs:
            reason = f"served its {worker.jobs} calls (--max-jobs)"
        elif worker.generation != self.generation:
            reason = "app code reloaded"
        elif self.max_memory_mb:
            rss = worker.rss_mb()
            if rss is not None and rss > self.max_memory_mb:
                reason = f"RSS {rss:.0f} MB past --max-worker-memory {self.max_memory_mb} MB"
        if reason is None:
            self.idle.put_nowait(worker)
            return
        self.recycled += 1
        self._retire(worker, reason)

    def _retire(self, worker: Worker, reason: str, *, kill: bool = False) -> None:
        if worker.retired:
            return
        worker.retired = True
        self.workers.discard(worker)
        proc = worker.proc
        if kill or proc.returncode is not None:
            kill_group(proc)
        elif proc.stdin is not None:
            proc.stdin.close()  # EOF: the worker exits on its own
            self._track(self._reap(proc))
        if not self._closing:
            self._track(self._replace(worker.pid, reason, time.monotonic()))

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        try:
            await asyncio.wait_for(proc.wait(), REAP_GRACE)
        except TimeoutError:
            pass
        kill_group(proc)  # the worker itself, if it did not exit, and whatever it left running
        await proc.wait()

    async def _replace(self, old_pid: int, reason: str, since: float) -> None:
        while not self._closing:
            if self._failures:
                delay = min(MAX_BACKOFF, 0.05 * 2 ** self._failures)
                log.warning("isolate: waiting %.2f s before starting a worker (%d failures in a row)",
                            delay, self._failures)
                await asyncio.sleep(delay)
            try:
                worker = await self._spawn()
            except WorkerStartError as exc:
                self._failures += 1
                log.error("isolate: %s", exc)
                continue
            elapsed = time.monotonic() - since
            self.respawns.append(elapsed)
            log.info("isolate: worker %d retired (%s); replaced by %d in %.0f ms", old_pid, reason,
                     worker.pid, elapsed * 1000)
            for observer in self.respawn_observers:
                observer(elapsed, reason)
            if self._closing:
                self._retire(worker, "server shutting down", kill=True)
                return
            self.idle.put_nowait(worker)
            return
