"""What a dialect handler and its connection know of each other (no import between them needed).

A connection (``tcp.connection``) owns the socket, the lifecycle and flow control; a handler
(``tcp.lines``, ``tcp.legacy``) owns one dialect: its decoder, how a message becomes calls and how a
reply is framed.  Handlers reach their connection only through :class:`Link`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ppy.errors import PpyError
from ppy.server.state import ServerState


class Decoder(Protocol):
    #: The bytes held: empty exactly when nothing is ``pending`` or ``ready`` (the per-request check).
    buffer: bytearray

    @property
    def pending(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]: ...

    def feed_eof(self) -> None: ...


class Handler(Protocol):
    """A dialect: decodes messages, starts their calls, frames replies."""

    @property
    def decoder(self) -> Decoder: ...

    def handle(self, message: bytes) -> bool:
        """Handle one message; False when it must wait for the window (it is offered again later)."""
        ...

    def error_frame(self, error: PpyError) -> bytes:
        """An error reply in this dialect, for a message that has no id (framing errors, refusals)."""
        ...

    def resumed(self) -> None:
        """The connection's waiting output went below its low-water mark (streams may go on)."""
        ...

    def goaway(self) -> None:
        """The process hands over (a roll or a restart on held sockets): tell the client, if the dialect can."""
        ...


class Link(Protocol):
    """The connection as its handler sees it."""

    state: ServerState
    authed: bool
    calls: int  # calls running (a batch counts as its calls); the handler adds those it starts
    window: int  # --max-conn-inflight

    #: Resolved when the connection is gone (its streams end: their generators are closed).
    lost: asyncio.Future[None]

    @property
    def writable(self) -> bool:
        """Below the output high-water mark: a stream may produce more (see :meth:`Handler.resumed`)."""
        ...

    def send(self, frame: bytes) -> None:
        """Queue a framed reply (written at the end of this loop turn, with the others)."""

    def send_line(self, line: bytes) -> None:
        """Queue a reply line (the newline is added)."""

    def finished(self, weight: int, reply: bytes | None) -> None:
        """``weight`` calls ended; ``reply`` is their framed answer, if any."""

    def finish_reading(self) -> None:
        """Read nothing more; close once the replies owed are written."""

    def wrong_token(self) -> None:
        """A wrong token was presented (the connection closes after too many)."""
