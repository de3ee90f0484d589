"""What every listener of one server process shares: config, dispatcher, connections, drain state."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ppy import __version__
from ppy.app.dispatch import Dispatcher
from ppy.app.registry import Registry
from ppy.config import Config
from ppy.run.isolated import IsolatedRunner
from ppy.run.threads import ThreadRunner

#: The name of a task in state.tasks that serves a listener rather than a call (ppy.server.http).
SERVICE_TASK = "ppy-service"


class StartupError(Exception):
    """The server cannot start; the message says what to do (the CLI prints it and exits non-zero)."""


class Closable(Protocol):
    """A TCP/Unix connection as the drain and the handover see it."""

    lost: asyncio.Future[None]  # done once the connection is gone (its last byte written or dropped)

    def drain_close(self) -> None: ...

    def abort(self) -> None: ...

    def goaway(self) -> None:
        """Tell a lines client, once, that this process hands over (``rpc.goaway``)."""


@dataclass
class ServerState:
    config: Config
    dispatcher: Dispatcher
    connections: set[Closable] = field(default_factory=set)
    by_dialect: Counter[str] = field(default_factory=Counter)  # open connections per dialect
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    draining: bool = False
    ready: bool = False
    refused: int = 0  # connections refused past --max-connections
    #: Listeners bound by the ``--workers`` supervisor and shared by its children, by kind
    #: ("tcp", "uds", "http"); empty when this process binds its own.
    listen_sockets: dict[str, list[socket.socket]] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Call tasks are tracked, so the drain can wait for them; each takes itself out as it ends.
        self.dispatcher.spawn, self.dispatcher.forget = self.start_call, self.tasks.discard

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a task the drain will wait for; it leaves ``tasks`` when done."""
        task = self.start_call(coro)
        task.add_done_callback(self.tasks.discard)
        return task

    def start_call(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """:meth:`spawn` for ``Dispatcher.begin``, whose coroutine leaves ``tasks`` itself as it ends (no
        done callback; one cancelled before its first step stays, which only a drain's deadline does).

        ``name`` (the method called) is given to the task as it is made: Python 3.11 otherwise formats
        "Task-<n>" for every task (3.12 does it lazily), and the loop's ``create_task`` names a task only
        after making it; 1.2 -> 0.95 us per task made, run and freed (docs/performance.md).  A task
        factory set on the loop still makes every call task."""
        loop = self._loop
        if loop is None:  # asyncio.get_running_loop() costs a getpid() system call on 3.11: once per process
            loop = self._loop = asyncio.get_running_loop()
        if name is not None and loop.get_task_factory() is None:
            task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, name=name)
        else:
            task = loop.create_task(coro, name=name)
        self.tasks.add(task)
        return task

    @property
    def open_connections(self) -> int:
        return len(self.connections)


def default_app_dir() -> Path:
    local = Path("app")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "demo_app"


def build_state(config: Config) -> ServerState:
    """Load the app and build its runner and dispatcher: what every listener of this process shares."""
    app_dir = config.app_dir or default_app_dir()
    if not Path(app_dir).is_dir():
        raise StartupError(f"app folder {app_dir} does not exist; create it or pass another APP_DIR")
    try:
        token = config.token  # read once, so a bad file fails at start-up
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    del token
    registry = Registry.build(Path(app_dir), config.import_timeout)
    runner: ThreadRunner | IsolatedRunner
    if config.isolate:
        runner = IsolatedRunner(Path(app_dir), size=config.pool_size, max_jobs=config.max_jobs,
                                max_memory_mb=config.max_worker_memory, debug=config.debug,
                                import_timeout=config.import_timeout)
    else:
        runner = ThreadRunner(config.threads, debug=config.debug)
    dispatcher = Dispatcher(config, registry, runner, __version__)
    return ServerState(config, dispatcher)
