"""The process lifecycle: load the app, bind the listeners, serve, drain on SIGTERM.

Start-up failures (a port in use, a bad app folder, a public host without a
token) raise :class:`StartupError` with a message saying what to do; the CLI
prints it and exits non-zero.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from ppy import __version__
from ppy.app.runner import CUT_OFF_CANCEL
from ppy.config import Config
from ppy.run import forksafe
from ppy.server import handover as handover_mod
from ppy.server.handover import HANDOVER_GRACE, HANDOVER_SIGNAL
from ppy.server.openfiles import Acceptor, fit_open_files
from ppy.server.state import ServerState, build_state
from ppy.server.state import StartupError as StartupError  # re-exported: the CLI and supervisor catch it
from ppy.server.state import default_app_dir as default_app_dir  # re-exported for ls, stubs, supervisor
from ppy.server.tcp.connection import Connection
from ppy.server.tcp.tls import connection_factory as tls_connection_factory
from ppy.server.tls import Tls, TlsConfigError, reload_tls
from ppy.server.tls import load as load_tls

log = logging.getLogger("ppy.server")

OUT_OF_DESCRIPTORS = ("server is out of file descriptors (the open-files limit, ulimit -n); retry later, "
                      "and tell its operator")

#: Deep enough that a burst of one-shot legacy clients never waits for a SYN retry (nginx uses 511; we
#: ask for more and let net.core.somaxconn cap it).
BACKLOG = 4096
#: ThreadRunner's pool thread names start with this (``thread_name_prefix`` in run/threads.py).
CALL_THREAD_PREFIX = "ppy-call"


@dataclass(frozen=True)
class WorkerLink:
    """How a ``--workers`` child process talks to its supervisor (see ppy.server.workers.supervisor)."""

    index: int
    ready_fd: int  # one byte is written here once the worker serves
    lifeline_fd: int  # EOF here means the supervisor is gone: drain and exit
    #: Entries the workers a SIGHUP roll replaces serve: if one fails to import here, the roll stops.
    expect: tuple[str, ...] = ()


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_safety(config: Config) -> None:
    """Protected mode: on a non-loopback host every open port must authenticate its clients.

    Plaintext ports authenticate with the token only; TLS ports with the token or a client certificate.
    """
    if is_loopback(config.host) or config.insecure:
        return
    open_ports = []
    if config.token_file is None:
        open_ports += [f"{flag} {port}" for flag, port in (("--port", config.port), ("--http-port", config.http_port))
                       if port]
        if config.tls_client_ca is None:
            open_ports += [f"{flag} {port}" for flag, port in (("--tls-port", config.tls_port),
                                                                ("--https-port", config.https_port)) if port]
    if open_ports:
        raise StartupError(
            f"refusing to listen on non-loopback --host {config.host}: {', '.join(open_ports)} would be open to "
            "anyone who can reach it, who could run your functions. Give --token-file FILE (recommended; any "
            "port), or --tls-client-ca FILE (TLS ports only: turn the plaintext ones off with --port 0 "
            "--http-port 0), or --insecure if a firewall already protects these ports.")


def _prepare_uds(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"--uds {path} exists and is not a socket; remove it or pick another path")
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # a stale socket left by a crash: safe to replace
    else:
        raise StartupError(f"--uds {path} is in use by another server; stop it or pick another path")
    finally:
        probe.close()


def bind_tcp(host: str, port: int, flag: str, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for every address of ``host`` (the ``--workers`` supervisor binds up front)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(f"cannot resolve --host {host}: {exc}") from None
    socks: list[socket.socket] = []
    for family, kind, proto, _name, addr in dict.fromkeys(infos):  # getaddrinfo may repeat an address
        sock = socket.socket(family, kind, proto)
        socks.append(sock)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
        except OSError as exc:
            for s in socks:
                s.close()
            raise StartupError(f"cannot listen on {_hostport(host, port)}: {exc.strerror or exc}; stop the "
                               f"other server or pick another {flag}") from None
    return socks


def bind_uds(path: str) -> socket.socket:
    _prepare_uds(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on --uds {path}: {exc.strerror or exc}") from None
    return sock


async def start_listeners(state: ServerState, tls: Tls | None = None) -> list[Any]:
    config = state.config
    servers: list[Any] = []

    def factory() -> Connection:
        return Connection(state)

    def refusing() -> Connection:
        return Connection(state, refusal=OUT_OF_DESCRIPTORS)

    # Sockets from a --workers supervisor or systemd (LISTEN_FDS) are served; the others are bound here.
    passed = state.listen_sockets
    sockets = {
        "tcp": passed.get("tcp") or (bind_tcp(config.host, config.port, "--port") if config.port else []),
        "uds": passed.get("uds") or ([bind_uds(config.uds)] if config.uds else []),
    }
    if tls is not None and (config.tls_port or passed.get("tls")):  # the loop does the handshake
        for sock in passed.get("tls") or bind_tcp(config.host, config.tls_port, "--tls-port"):
            servers.append(Acceptor(sock, tls_connection_factory(state), refusing, ssl=tls.listening,
                                    handshake_timeout=config.request_timeout,
                                    max_handshakes=config.max_connections))
    for sock in [*sockets["tcp"], *sockets["uds"]]:
        servers.append(Acceptor(sock, factory, refusing))
    if config.http_port or passed.get("http"):
        from ppy.server.http import app as http

        servers.append(await http.start(state, bind_tcp))
    if tls is not None and (config.https_port or passed.get("https")):
        from ppy.server.http import app as http

        plain = next((s for s in servers if isinstance(s, http.HttpServer)), None)
        sockets_https = passed.get("https") or bind_tcp(config.host, config.https_port, "--https-port")
        servers.append(await http.start(state, bind_tcp, sockets=sockets_https, ssl=tls.listening,
                                        app=plain.app if plain is not None else None))
    return servers


async def serve(config: Config, link: WorkerLink | None = None,
                sockets: dict[str, list[socket.socket]] | None = None) -> int:
    """Run until SIGTERM/SIGINT, drain, and return the exit code.

    ``link`` and ``sockets`` are given in a ``--workers`` child: listeners come bound from the
    supervisor, readiness is reported to it, and Ctrl-C is left to it (it forwards SIGTERM).
    """
    config = fit_open_files(config)  # raises the soft open-files limit; may lower --max-connections
    check_safety(config)
    handover = 0.0  # the grace of a drain that hands the listeners over (ppy.server.handover)
    if sockets is None:  # sockets systemd holds: a SIGTERM may be a restart, so hand over gracefully
        sockets = handover_mod.take_activated()
        handover = HANDOVER_GRACE if sockets else 0.0
    try:
        tls = load_tls(config, passed=bool(sockets.get("tls") or sockets.get("https")))
    except TlsConfigError as exc:
        raise StartupError(str(exc)) from None
    if config.reload:
        from ppy.server.workers import reload

        reload.prepare()
    state = build_state(config)
    state.listen_sockets = sockets or {}
    try:  # a roll's replacement that cannot import what the old workers serve must not serve
        handover_mod.check_expected(state.dispatcher.registry, link.expect if link else ())
    except handover_mod.ExpectedEntryFailed as exc:
        raise StartupError(str(exc)) from None
    try:
        await state.dispatcher.runner.start()
    except RuntimeError as exc:
        raise StartupError(str(exc)) from None
    reloader = None
    if config.reload:
        reloader = reload.Reloader(state)
        await reloader.start()
    servers = await start_listeners(state, tls)
    registry = state.dispatcher.registry
    where = [f"tcp://{_hostport(config.host, config.port)}"] if config.port else []
    if config.uds:
        where.append(f"unix://{config.uds}")
    if config.http_port:
        where.append(f"http://{_hostport(config.host, config.http_port)}")
    where += [f"{scheme}://{_hostport(config.host, port)}" for scheme, port in
              (("tls", config.tls_port), ("https", config.https_port)) if port]
    if link is None:
        print(f"ppy {__version__}: serving {registry.app_dir} ({len(registry.entries)} entries, "
              f"{len(registry.functions)} functions) on {', '.join(where)}", file=sys.stderr, flush=True)
    if link is None or link.index == 0:  # one report of import errors, not one per worker
        for entry, why in registry.failed.items():
            print(f"ppy: warning: entry {entry!r} failed to import: {why}", file=sys.stderr, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            print("ppy: second signal, exiting now without finishing calls", file=sys.stderr, flush=True)
            os._exit(1)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGHUP, reload_tls, tls)  # new certificate files for new connections
    if link is not None:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C: the supervisor decides
        loop.add_reader(link.lifeline_fd, stop.set)  # readable only at EOF: the supervisor died

        def on_handover() -> None:  # a SIGHUP roll: a successor already serves this slot
            nonlocal handover
            handover = HANDOVER_GRACE
            stop.set()

        loop.add_signal_handler(HANDOVER_SIGNAL, on_handover)
        # "1" and the entries this worker serves: the supervisor checks a roll's replacements against them.
        os.write(link.ready_fd, b"1" + json.dumps(list(registry.entries)).encode())
        os.close(link.ready_fd)
    state.ready = True
    await stop.wait()
    if link is not None:
        loop.remove_reader(link.lifeline_fd)
    if reloader is not None:
        await reloader.stop()
    await drain(state, servers, handover)
    return 0


async def drain(state: ServerState, servers: list[Any], grace: float = 0.0) -> None:
    """Stop accepting, answer every call in flight (each ends by its deadline), then close.
    With a ``grace``, hand over first (``rpc.goaway``, see ppy.server.handover)."""
    state.ready = False
    if grace > 0:
        await handover_mod.hand_over(state, servers, grace)
    state.draining = True
    in_flight = state.dispatcher.inflight  # every admitted call, with a task or not (callbacks, POST /rpc)
    log.info("draining: %d calls in flight, %d connections", in_flight, state.open_connections)
    print(f"ppy: shutting down, finishing {in_flight} calls in flight", file=sys.stderr, flush=True)
    for server in servers:
        server.close()
    await _finish_calls_and_connections(state)
    await state.dispatcher.runner.aclose()
    if state.config.uds and "uds" not in state.listen_sockets:  # a supervisor or systemd owns it
        try:
            os.unlink(state.config.uds)
        except OSError:
            pass


async def _finish_calls_and_connections(state: ServerState) -> None:
    """Wait for every call task *and* every reply to be written out, all by one deadline.

    Every call has a deadline of at most --timeout; the 2 s margin covers writing the
    last replies.  Calls are awaited as they appear (a legacy frame already half-received
    when the drain began still completes and runs), and connections are awaited until
    they close, so a large reply still in the transport's buffer reaches a slow reader
    instead of dying with the event loop.  Past the deadline, calls still running are
    cancelled, which answers them with an error (see tcp.Connection), and connections
    still open are aborted.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.config.timeout + 2.0
    for conn in list(state.connections):
        conn.drain_close()
    while state.tasks or state.connections or state.dispatcher.inflight:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        waits: set[asyncio.Future[Any]] = set(state.tasks)
        waits.update(conn.lost for conn in state.connections)
        if not waits:
            if state.dispatcher.inflight:  # calls run without a task (lane callbacks) whose client left
                await asyncio.sleep(0.01)
                continue
            break  # connections that cannot be awaited: nothing left to wait for
        await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        for conn in list(state.connections):
            conn.drain_close()
    late = set(state.tasks)
    for task in late:
        task.cancel(CUT_OFF_CANCEL)
    if late:
        log.warning("drain deadline passed: %d calls cut off with an error", len(late))
        await asyncio.wait(late, timeout=1.0)  # they write their error replies as they unwind
    if state.connections:
        for conn in list(state.connections):
            conn.drain_close()
        lost = {conn.lost for conn in state.connections}
        if lost:
            await asyncio.wait(lost, timeout=1.0)  # a last second to flush those error replies
        for conn in list(state.connections):
            conn.abort()
    await asyncio.sleep(0)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: Allocations (minus deallocations) of container objects between two young-generation collections;
#: Python's default is 700.  Each call allocates a dozen short-lived objects (task, future,
#: coroutines, request struct) that die by reference counting, yet count towards the cyclic
#: collector's trigger: at 700 it ran every ~50 calls.  20,000 took sync h.hello at 32 x 16 pipelined
#: from ~98,000 to ~119,000 calls/s (docs/performance.md) for at most a few MB held a little longer.
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Raise the young-generation threshold, before the app is imported: an app that sets its own wins."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def run(config: Config, link: WorkerLink | None = None,
        sockets: dict[str, list[socket.socket]] | None = None) -> int:
    """Blocking entry point: uvloop when available, plain asyncio otherwise."""
    tune_gc()
    forksafe.install()  # a child forked by a function closes the server's sockets (ppy.run.forksafe)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but keep working without it
        code = asyncio.run(serve(config, link, sockets))
    else:
        code = uvloop.run(serve(config, link, sockets))
    _exit_past_abandoned_calls(code)
    return code


def _exit_past_abandoned_calls(code: int) -> None:
    """Exit now if pool threads still run calls whose clients were already answered -32001.

    Python cannot stop a thread, and the interpreter joins pool threads at exit, so
    one function stuck in a loop would otherwise hold the shutdown forever.  Every
    call was answered by now, so nothing is lost by not waiting.
    """
    deadline = time.monotonic() + 0.5  # idle pool threads need a moment to see the shutdown
    busy = [t for t in threading.enumerate() if t.name.startswith(CALL_THREAD_PREFIX)]
    for thread in busy:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in busy if t.is_alive()]
    if stuck:
        print(f"ppy: {len(stuck)} abandoned call(s) past their deadline still running in threads; "
              "exiting without waiting for them (use --isolate to have such calls killed)",
              file=sys.stderr, flush=True)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
