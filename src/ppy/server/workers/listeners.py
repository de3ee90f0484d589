"""What a ``--workers`` supervisor listens on: bound once by it, or passed by systemd, shared by its workers.

TCP, HTTP, TLS and HTTPS get one SO_REUSEPORT socket per worker *slot*, so the kernel
spreads connections evenly by address hash; a probe bind without
SO_REUSEPORT first makes a second server on the same port fail instead of
silently joining the group.  The Unix socket, and every socket systemd passed
(LISTEN_FDS, see ppy.server.activation), is one socket shared by all workers.
A roll's replacement serves its slot's sockets next to the worker it replaces.
"""

from __future__ import annotations

import socket

from ppy.config import Config
from ppy.server.main import bind_tcp, bind_uds

Sockets = dict[str, list[socket.socket]]  # kind ("tcp", "http", "uds", "tls", "https") -> listening sockets


class Listeners:
    """Every listener, bound by the parent: per-slot SO_REUSEPORT TCP/HTTP sockets, one shared Unix socket."""

    def __init__(self, config: Config, passed: Sockets | None = None) -> None:
        self.slots: list[Sockets] = []
        self.shared: Sockets = dict(passed or {})  # sockets systemd passed are shared by all workers
        try:
            self._bind(config)
        except BaseException:
            self.close()
            raise

    def _bind(self, config: Config) -> None:
        ports: dict[str, int] = {}
        for kind, port, flag in (("tcp", config.port, "--port"), ("http", config.http_port, "--http-port"),
                                 ("tls", config.tls_port, "--tls-port"), ("https", config.https_port, "--https-port")):
            if not port or kind in self.shared:  # 0 turns a listener off; systemd's sockets replace binding
                continue
            probe = bind_tcp(config.host, port, flag)  # fails if anyone, SO_REUSEPORT or not, holds it
            ports[kind] = probe[0].getsockname()[1]  # the port the kernel chose for port 0
            for sock in probe:
                sock.close()
        for _ in range(config.workers):
            slot: Sockets = {}
            self.slots.append(slot)
            for kind, port in ports.items():
                slot[kind] = bind_tcp(config.host, port, f"--{kind}-port", reuse_port=True)
        if config.uds and "uds" not in self.shared:
            self.shared["uds"] = [bind_uds(config.uds)]

    def for_slot(self, index: int) -> Sockets:
        return {**self.slots[index], **self.shared}

    def close(self) -> None:
        for group in (*self.slots, self.shared):
            for socks in group.values():
                for sock in socks:
                    sock.close()
