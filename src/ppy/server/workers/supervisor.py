"""``--workers N``: N server processes sharing the listeners, supervised by this parent.

The parent binds every listener once, then starts N children with
``python -m ppy.server.workers.supervisor`` that inherit the bound sockets and run
the ordinary server (:func:`ppy.server.main.serve`).  TCP and HTTP get one
SO_REUSEPORT socket per worker *slot*, so the kernel spreads connections
evenly by address hash (one shared socket lets the busiest process win most
accepts); the parent keeps every slot's socket open, so connections queued
for a worker that died wait for its successor instead of being reset.  A
probe bind without SO_REUSEPORT first makes a second server on the same
port fail instead of silently joining the group.  The Unix socket is one
socket shared by all workers.

The parent imports no app code, so a crash in the app cannot take it down.
It replaces a child that exits, after a back-off that doubles with every
child that dies young (never a fork loop), forwards SIGTERM/SIGINT as SIGTERM
so every child drains, and exits 0 once all drained.  Children ignore
Ctrl-C (the parent decides) and drain on their own if the parent dies (EOF
on the "lifeline" pipe).  Metrics: ``PROMETHEUS_MULTIPROC_DIR`` is set to a
fresh folder for the children (prometheus_client's multiprocess mode) and
dead children are marked dead there.

SIGHUP rolls the workers: one slot at a time, a replacement (the app code on
disk now) starts on the slot's sockets, and once it serves, the old worker
gets HANDOVER_SIGNAL: it says ``rpc.goaway``, keeps answering for a grace
period, drains and exits (ppy.server.handover).  A replacement that dies
before serving, or cannot import an entry the running workers serve, stops
the roll and the old workers keep serving.  Listeners: ppy.server.workers.listeners.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from ppy import __version__
from ppy import config as cfg
from ppy.config import Config
from ppy.server.handover import HANDOVER_GRACE, HANDOVER_SIGNAL
from ppy.server.main import (
    StartupError,
    WorkerLink,
    check_safety,
    default_app_dir,
)
from ppy.server.observe import shared as multiproc
from ppy.server.tls import load as load_tls
from ppy.server.workers.listeners import Listeners

log = logging.getLogger("ppy.supervisor")

ENV_CONFIG = "PPY_WORKER_CONFIG"  # the parent's Config as JSON
ENV_FDS = "PPY_WORKER_FDS"  # "tcp=3,4;uds=5;http=6": inherited listening sockets
ENV_LINK = "PPY_WORKER_LINK"  # "index,ready_fd,lifeline_fd"
ENV_EXPECT = "PPY_WORKER_EXPECT"  # JSON list: entries a roll's replacement must import (the old ones serve them)
START_TIMEOUT = 120.0  # a child importing a big app may take a while; past this it is stuck
STABLE_AFTER = 10.0  # a child that served this long before dying resets the back-off
MAX_BACKOFF = 10.0


def config_to_json(config: Config) -> str:
    return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()})


def config_from_json(text: str) -> Config:
    raw = json.loads(text)
    values: dict[str, Any] = {}
    for f in cfg.fields():
        if f.name in raw:
            value = raw[f.name]
            kind = f.type if isinstance(f.type, str) else str(f.type)
            values[f.name] = Path(value) if value is not None and kind.startswith("Path") else value
    return Config(**values)


class Supervisor:
    def __init__(self, config: Config, listeners: Listeners, activated: bool = False) -> None:
        self.config = config
        self.listeners = listeners
        self.activated = activated  # systemd holds the sockets: a SIGTERM may be a restart, hand over
        self.stopping = False
        self.procs: dict[int, asyncio.subprocess.Process] = {}  # slot -> its serving child
        self.pids: set[int] = set()  # every live child, a draining one of a roll included
        self.entries: dict[int, tuple[str, ...]] = {}  # slot -> the app entries its child serves
        self.exit_codes: dict[int, int] = {}  # slot -> exit code after the drain
        self.respawns: deque[float] = deque(maxlen=4096)  # seconds from a child's death to its successor's ready
        self._lifeline_r, self._lifeline_w = os.pipe()
        self._roll: asyncio.Task[None] | None = None
        self._roll_again = False
        self._all_ready = False
        self._histogram: Any = None
        if multiproc.enabled():  # written to the shared folder, so any worker's /metrics shows it
            from prometheus_client import Histogram

            self._histogram = Histogram("ppy_worker_respawn_seconds", multiproc.RESPAWN_HELP, ["pool"],
                                        buckets=multiproc.RESPAWN_BUCKETS, registry=None)

    def _child_env(self, index: int, ready_fd: int, expect: tuple[str, ...]) -> dict[str, str]:
        sockets = self.listeners.for_slot(index)
        fds = ";".join(f"{kind}={','.join(str(s.fileno()) for s in socks)}" for kind, socks in sockets.items())
        return {**os.environ, ENV_CONFIG: config_to_json(self.config), ENV_FDS: fds,
                ENV_LINK: f"{index},{ready_fd},{self._lifeline_r}", ENV_EXPECT: json.dumps(list(expect))}

    async def _spawn(self, index: int, expect: tuple[str, ...] = ()) -> tuple[asyncio.subprocess.Process, bool, str]:
        """Start one child; returns it, whether it became ready (False: it died first) and what it reported:
        the entries it serves (JSON) when ready, else why it did not start (when it could say)."""
        ready_r, ready_w = os.pipe()
        passed = [s.fileno() for socks in self.listeners.for_slot(index).values() for s in socks]
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ppy.server.workers.supervisor", env=self._child_env(index, ready_w, expect),
                pass_fds=[*passed, ready_w, self._lifeline_r])
        finally:
            os.close(ready_w)
        self.pids.add(proc.pid)  # from now on a shutdown signals it too
        loop = asyncio.get_running_loop()
        report: asyncio.Future[bytes] = loop.create_future()
        got = bytearray()

        def on_readable() -> None:  # "1" + entries when the child serves, "0" + why when it gave up; then EOF
            data = os.read(ready_r, 65536)
            got.extend(data)
            if not data and not report.done():
                report.set_result(bytes(got))

        loop.add_reader(ready_r, on_readable)
        try:
            data = await asyncio.wait_for(report, START_TIMEOUT)
        except TimeoutError:
            log.error("worker %d (pid %d) not ready after %.0f s; killing it", index, proc.pid, START_TIMEOUT)
            proc.kill()
            data = b""
        finally:
            loop.remove_reader(ready_r)
            os.close(ready_r)
        return proc, data[:1] == b"1", data[1:].decode(errors="replace")

    def _served(self, index: int, proc: asyncio.subprocess.Process, report: str) -> None:
        self.procs[index] = proc
        try:
            self.entries[index] = tuple(json.loads(report))
        except ValueError:
            self.entries[index] = ()

    async def _slot(self, index: int) -> None:
        failures = 0
        died_at: float | None = None
        while not self.stopping:
            proc, ready, report = await self._spawn(index)
            if ready:
                self._served(index, proc, report)
                if len(self.entries) == self.config.workers and not self._all_ready:
                    self._all_ready = True
                    print(f"ppy: all {self.config.workers} workers ready (SIGHUP replaces them with the code on "
                          "disk now)", file=sys.stderr, flush=True)
            started = time.monotonic()
            if ready and died_at is not None:
                elapsed = started - died_at
                self.respawns.append(elapsed)
                if self._histogram is not None:
                    self._histogram.labels("workers").observe(elapsed)
                log.warning("worker %d replaced by pid %d in %.0f ms", index, proc.pid, elapsed * 1000)
            code = await proc.wait()
            while ready and self.procs.get(index) not in (proc, None):  # retired by a roll: follow its successor
                self._gone(proc)
                proc = self.procs[index]
                started = time.monotonic()
                code = await proc.wait()
            self._gone(proc)
            if self.procs.get(index) is proc:
                del self.procs[index]
            if self.stopping:
                self.exit_codes[index] = code if ready else 0
                return
            died_at = time.monotonic()
            failures = 0 if ready and died_at - started > STABLE_AFTER else failures + 1
            delay = min(MAX_BACKOFF, 0.1 * 2 ** (failures - 1)) if failures else 0.0
            log.error("worker %d (pid %d) %s after %.1f s; starting a new one%s", index, proc.pid,
                      _describe(code), died_at - started, f" in {delay:.1f} s" if delay else "")
            if delay:
                await asyncio.sleep(delay)

    def _gone(self, proc: asyncio.subprocess.Process) -> None:
        self.pids.discard(proc.pid)
        _mark_dead(proc.pid)

    def roll(self) -> None:
        """SIGHUP: replace every worker, one at a time, with a fresh process (the app code on disk now)."""
        if self.stopping:
            return
        if self._roll is not None and not self._roll.done():
            self._roll_again = True  # code changed again mid-roll: roll once more when this one ends
            return
        self._roll = asyncio.get_running_loop().create_task(self._rolling())

    async def _rolling(self) -> None:
        while True:
            self._roll_again = False
            await self._roll_once()
            if not self._roll_again or self.stopping:
                return

    async def _roll_once(self) -> None:
        """Start a replacement, and only once it serves, tell the old worker of its slot to hand over.

        The slot's sockets stay open throughout (the supervisor holds them; old and new worker share
        them while both run), so no connection is refused.  A replacement that dies before serving,
        or cannot import an entry the current workers serve, stops the roll: the workers not yet
        replaced keep serving the old code.
        """
        began = time.monotonic()
        print(f"ppy: SIGHUP: replacing {self.config.workers} workers one at a time", file=sys.stderr, flush=True)
        for index in range(self.config.workers):
            if self.stopping:
                return
            expect = tuple(sorted({e for entries in self.entries.values() for e in entries}))
            old = self.procs.get(index)
            if old is None or old.returncode is not None:
                continue  # the slot is being respawned anyway, from the code on disk now
            proc, ready, report = await self._spawn(index, expect)
            if not ready:
                code = await proc.wait()
                self._gone(proc)
                why = report.strip() or f"it {_describe(code)} before serving; see its output above"
                log.error("roll stopped at worker %d: the replacement (pid %d) did not start: %s. "
                          "The old workers keep serving; fix the code and send SIGHUP again", index, proc.pid, why)
                return
            self._served(index, proc, report)
            try:
                os.kill(old.pid, HANDOVER_SIGNAL)  # it tells its clients rpc.goaway, drains and exits
            except ProcessLookupError:
                pass
            await old.wait()
            log.warning("worker %d replaced by pid %d (roll)", index, proc.pid)
        elapsed = time.monotonic() - began
        print(f"ppy: SIGHUP: {self.config.workers} workers replaced in {elapsed * 1000:.0f} ms",
              file=sys.stderr, flush=True)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:  # a second Ctrl-C: children exit at once on their second SIGTERM
                print("ppy: second signal, stopping workers now", file=sys.stderr, flush=True)
                self._forward(signal.SIGTERM)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        loop.add_signal_handler(signal.SIGHUP, self.roll)  # fresh workers: new code, new TLS files
        slots = [loop.create_task(self._slot(i)) for i in range(self.config.workers)]
        self._banner()
        await stop.wait()
        self.stopping = True
        print(f"ppy: shutting down {len(self.pids)} workers", file=sys.stderr, flush=True)
        self.listeners.close()  # stop accepting: the children's copies close as they drain
        # Under socket activation a stop may be a restart: the workers hand over (rpc.goaway, grace).
        self._forward(HANDOVER_SIGNAL if self.activated and signals == 1 else signal.SIGTERM)
        waits: list[asyncio.Future[Any]] = [*slots, *([self._roll] if self._roll is not None else [])]
        _done, pending = await asyncio.wait(waits, timeout=self.config.timeout + HANDOVER_GRACE + 10.0)
        if pending:
            self._forward(signal.SIGKILL)
            await asyncio.wait(pending, timeout=5.0)
            return 1
        return 0 if all(code == 0 for code in self.exit_codes.values()) else 1

    def _banner(self) -> None:
        config = self.config
        where = [f"tcp://{_hostport(config.host, config.port)}"] if config.port else []
        if config.uds:
            where.append(f"unix://{config.uds}")
        if config.http_port:
            where.append(f"http://{_hostport(config.host, config.http_port)}")
        where += [f"{scheme}://{_hostport(config.host, port)}" for scheme, port in
                  (("tls", config.tls_port), ("https", config.https_port)) if port]
        print(f"ppy {__version__}: serving {config.app_dir or default_app_dir()} with {config.workers} worker "
              f"processes on {', '.join(where)}", file=sys.stderr, flush=True)

    def _forward(self, sig: int) -> None:
        for pid in list(self.pids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _mark_dead(pid: int) -> None:
    if multiproc.enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def supervise(config: Config) -> int:
    """``ppy serve --workers N`` (N > 1): check, bind, run the children, return the exit code."""
    check_safety(config)
    app_dir = config.app_dir or default_app_dir()
    if not Path(app_dir).is_dir():
        raise StartupError(f"app folder {app_dir} does not exist; create it or pass another APP_DIR")
    try:
        _ = config.token
        load_tls(config)  # refuse bad certificate files here, not once per worker
    except ValueError as exc:  # TlsConfigError is a ValueError
        raise StartupError(str(exc)) from None
    config = dataclasses.replace(config, app_dir=Path(app_dir))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the roll's handler is installed: never die of it
    from ppy.server import activation

    passed = activation.take()
    if passed:
        print(f"ppy: serving sockets passed by systemd: {activation.describe(passed)}", file=sys.stderr, flush=True)
    listeners = Listeners(config, passed)
    metrics_dir = None
    if not multiproc.enabled():
        metrics_dir = tempfile.mkdtemp(prefix="ppy-metrics-")
        os.environ[multiproc.ENV] = metrics_dir
    try:
        return asyncio.run(Supervisor(config, listeners, activated=bool(passed)).run())
    finally:
        listeners.close()
        if config.uds and "uds" not in passed:  # systemd owns the path of a socket it passed
            try:
                os.unlink(config.uds)
            except OSError:
                pass
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def child_main() -> int:
    """A ``--workers`` child: the ordinary server on the sockets the supervisor bound."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until serve() installs its handler: never die of it
    from ppy import logs
    from ppy.server.main import run

    try:
        config = config_from_json(os.environ.pop(ENV_CONFIG))
        index, ready_fd, lifeline_fd = (int(x) for x in os.environ.pop(ENV_LINK).split(","))
        spec = os.environ.pop(ENV_FDS)
        expect = tuple(json.loads(os.environ.pop(ENV_EXPECT, "[]")))
    except (KeyError, ValueError):
        print("ppy.server.workers.supervisor is started by `ppy serve --workers N`, not by hand", file=sys.stderr)
        return 2
    sockets: dict[str, list[socket.socket]] = {}
    for part in filter(None, spec.split(";")):
        kind, _, fds = part.partition("=")
        sockets[kind] = [socket.socket(fileno=int(fd)) for fd in fds.split(",")]
    logs.setup(config.log_format, access_log=config.access_log)
    try:
        return run(config, WorkerLink(index, ready_fd, lifeline_fd, expect), sockets)
    except StartupError as exc:
        print(f"ppy serve (worker {index}): {exc}", file=sys.stderr)
        try:
            os.write(ready_fd, b"0" + str(exc).encode())  # the supervisor logs why (a SIGHUP roll stops)
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(child_main())
