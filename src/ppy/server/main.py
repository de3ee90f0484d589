"""The process lifecycle: load the app, bind the listeners, serve, drain on SIGTERM.

Start-up failures (a port in use, a bad app folder, a public host without a
token) raise :class:`StartupError` with a message saying what to do; the CLI
prints it and exits non-zero.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import Any

from ppy import __version__
from ppy.app.dispatch import Dispatcher
from ppy.app.registry import Registry
from ppy.config import Config
from ppy.run.threads import ThreadRunner
from ppy.server.state import ServerState
from ppy.server.tcp import Connection

log = logging.getLogger("ppy.server")

#: Deep enough that a burst of one-shot legacy clients never waits for a SYN retry (nginx uses 511; we
#: ask for more and let net.core.somaxconn cap it).
BACKLOG = 4096


class StartupError(Exception):
    pass


def default_app_dir() -> Path:
    local = Path("app")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "demo_app"


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
    if not is_loopback(config.host) and config.token_file is None and not config.insecure:
        raise StartupError(
            f"refusing to listen on non-loopback --host {config.host} without a token: anyone who can reach "
            "it could run your functions. Give --token-file FILE (recommended), or --insecure if a firewall "
            "already protects this port.")


def build_state(config: Config) -> ServerState:
    app_dir = config.app_dir or default_app_dir()
    if not Path(app_dir).is_dir():
        raise StartupError(f"app folder {app_dir} does not exist; create it or pass another APP_DIR")
    try:
        token = config.token  # read once, so a bad file fails at start-up
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    del token
    registry = Registry.build(Path(app_dir))
    runner = ThreadRunner(config.threads)
    dispatcher = Dispatcher(config, registry, runner, __version__)
    return ServerState(config, dispatcher)


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


async def start_listeners(state: ServerState) -> list[Any]:
    config = state.config
    loop = asyncio.get_running_loop()
    servers: list[Any] = []

    def factory() -> Connection:
        return Connection(state)

    try:
        servers.append(await loop.create_server(factory, config.host, config.port, backlog=BACKLOG,
                                                reuse_address=True, reuse_port=config.workers > 1))
    except OSError as exc:
        raise StartupError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; stop the "
                           "other server or pick another --port") from None
    if config.uds:
        _prepare_uds(config.uds)
        try:
            servers.append(await loop.create_unix_server(factory, config.uds, backlog=BACKLOG))
        except OSError as exc:
            raise StartupError(f"cannot listen on --uds {config.uds}: {exc.strerror or exc}") from None
    if config.http_port:
        from ppy.server import http

        servers.append(await http.start(state))
    return servers


async def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT, drain, and return the exit code."""
    check_safety(config)
    state = build_state(config)
    servers = await start_listeners(state)
    registry = state.dispatcher.registry
    where = [f"tcp://{_hostport(config.host, config.port)}"]
    if config.uds:
        where.append(f"unix://{config.uds}")
    if config.http_port:
        where.append(f"http://{_hostport(config.host, config.http_port)}")
    print(f"ppy {__version__}: serving {registry.app_dir} ({len(registry.entries)} entries, "
          f"{len(registry.functions)} functions) on {', '.join(where)}", file=sys.stderr, flush=True)
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
    state.ready = True
    await stop.wait()
    await drain(state, servers)
    return 0


async def drain(state: ServerState, servers: list[Any]) -> None:
    """Stop accepting, answer every call in flight (each ends by its deadline), then close."""
    state.ready = False
    state.draining = True
    in_flight = len(state.tasks)
    log.info("draining: %d calls in flight, %d connections", in_flight, state.open_connections)
    print(f"ppy: shutting down, finishing {in_flight} calls in flight", file=sys.stderr, flush=True)
    for server in servers:
        server.close()
    for conn in list(state.connections):
        conn.drain_close()
    # Every call has a deadline of at most --timeout, so this wait is bounded; the margin covers
    # writing the last replies.
    deadline = state.config.timeout + 2.0
    if state.tasks:
        _done, pending = await asyncio.wait(set(state.tasks), timeout=deadline)
        for task in pending:
            task.cancel()
    for conn in list(state.connections):
        conn.drain_close()
    await asyncio.sleep(0)
    state.dispatcher.runner.close()
    if state.config.uds:
        try:
            os.unlink(state.config.uds)
        except OSError:
            pass


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(config: Config) -> int:
    """Blocking entry point: uvloop when available, plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but keep working without it
        return asyncio.run(serve(config))
    return uvloop.run(serve(config))
