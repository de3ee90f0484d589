"""The TCP protocol on ``--tls-port``: the same connection, named by its client certificate in logs."""

from __future__ import annotations

import logging
from typing import Any

from ppy.server.state import ServerState
from ppy.server.tcp.connection import Connection
from ppy.server.tls import DecryptsInPlace, client_name, peer_subject

log = logging.getLogger("ppy.tls")


class TlsConnection(Connection, DecryptsInPlace):
    """A TCP connection on ``--tls-port``: the same protocol, with the client's certificate in its logs."""

    subject: str | None = None

    def connection_made(self, transport: Any) -> None:
        self.subject = peer_subject(transport)
        if self.subject is not None:
            log.info("TLS client %s connected to --tls-port from %s", self.subject,
                     transport.get_extra_info("peername"))
        super().connection_made(transport)

    def eof_received(self) -> bool | None:
        # TLS has no half-close: the transport closes after a close_notify whatever we return, and
        # returning True only makes the event loop log a warning per connection.
        super().eof_received()
        return None

    def _peer(self) -> str:
        return client_name(super()._peer(), self.subject)


def connection_factory(state: ServerState) -> Any:
    """The protocol factory for ``--tls-port`` listeners."""

    def factory() -> TlsConnection:
        return TlsConnection(state)

    return factory
