"""Handing the listeners over to a successor, so that a restart refuses and fails no call.

A successor serves the same listening sockets: the next worker of a
``--workers`` SIGHUP roll (the supervisor holds the sockets), or the next
process systemd starts with the sockets of ``ppy.socket`` (LISTEN_FDS, see
:mod:`ppy.server.activation`).  The process handing over stops accepting
(connections waiting in the shared backlog go to the successor), tells every
lines connection ``rpc.goaway`` and keeps answering every request that
reaches it for a grace period, so a request a client sent just before it
heard is answered instead of refused; ppy's clients move new calls to a
fresh connection as soon as they hear it, which ends the grace early.  Then
the ordinary drain runs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Iterable
from typing import Any

from ppy.app.registry import Registry
from ppy.server.state import ServerState

log = logging.getLogger("ppy.server")

#: How long a process handing over keeps answering requests on its open connections after telling
#: lines clients ``rpc.goaway`` (the drain goes on as soon as every connection closed).
HANDOVER_GRACE = 3.0
#: The signal a ``--workers`` supervisor sends a worker it replaced (SIGHUP roll): drain with the grace.
HANDOVER_SIGNAL = signal.SIGUSR2


class ExpectedEntryFailed(Exception):
    """A roll's replacement cannot import an entry the running workers serve: it must not serve."""


def take_activated() -> dict[str, list[socket.socket]]:
    """Sockets systemd passed to this process (``{}`` when none), announced on stderr."""
    from ppy.server import activation

    sockets = activation.take()
    if sockets:
        print(f"ppy: serving sockets passed by systemd: {activation.describe(sockets)}", file=sys.stderr, flush=True)
    return sockets


def check_expected(registry: Registry, expect: Iterable[str]) -> None:
    """Raise if an entry the workers being replaced serve failed to import here (entries that failed
    there too are not in ``expect``): the roll stops and the old workers keep serving."""
    broken = [f"{entry!r} ({registry.failed[entry]})" for entry in expect if entry in registry.failed]
    if broken:
        raise ExpectedEntryFailed(f"entry {', '.join(broken)} failed to import, which the running workers "
                                  "serve; fix the code and send SIGHUP again")


async def hand_over(state: ServerState, servers: list[Any], grace: float) -> None:
    """Stop accepting, tell lines clients ``rpc.goaway``, serve until they left or ``grace`` passed."""
    log.info("handing over: %d connections told rpc.goaway, served for up to %.0f s", state.open_connections, grace)
    for server in servers:
        server.close()  # connections waiting in the shared backlog go to the successor
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace

    def still_open() -> int:  # TCP and Unix connections, and HTTP keep-alive ones (closed once HTTP is idle)
        return state.open_connections + sum(getattr(server, "open_connections", 0) for server in servers)

    while still_open() and loop.time() < deadline:
        for conn in list(state.connections):
            conn.goaway()  # once per connection, as soon as its dialect is known to be lines
        await asyncio.sleep(0.02)
