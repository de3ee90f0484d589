"""What every listener of one server process shares: config, dispatcher, connections, drain state."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from ppy.app.dispatch import Dispatcher
from ppy.config import Config


class Closable(Protocol):
    def drain_close(self) -> None: ...


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

    def __post_init__(self) -> None:
        self.dispatcher.spawn = self.spawn  # call tasks are tracked, so the drain can wait for them

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a call task the drain will wait for."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    @property
    def open_connections(self) -> int:
        return len(self.connections)
