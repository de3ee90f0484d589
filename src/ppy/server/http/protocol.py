"""uvicorn's httptools protocol with the two deadlines uvicorn lacks (docs/security.md: every wait is bounded).

uvicorn closes a keep-alive connection idle *between* requests, but a
connection that never sends a first request, or trickles its headers one
byte at a time, is held forever — a slowloris holds the connection slots.
This subclass adds:

* ``--idle-timeout`` from connect to the first byte of the first request;
* ``--request-timeout`` from a request's first byte to the end of its headers
  (the body has its own deadline in :func:`ppy.server.http.edge.read_body`).

It only hooks the parser callbacks (``on_message_begin``,
``on_headers_complete``) that uvicorn's protocol has exposed for years.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpTools(HttpToolsProtocol):
    idle_timeout: float = 300.0
    request_timeout: float = 30.0
    _guard: asyncio.TimerHandle | None = None
    _since = 0.0  # loop time the guarded wait began
    _limit: float | None = None  # its length; None between requests (uvicorn's keep-alive applies)

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._start(self.idle_timeout)

    def on_message_begin(self) -> None:
        self._start(self.request_timeout)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._limit = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._limit = None
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None
        super().connection_lost(exc)

    def _start(self, seconds: float) -> None:
        """Start a guarded wait.  The timer is not replaced per request (a timer set and cancelled
        costs ~1.3 µs, a keep-alive client sends thousands a second): it fires at the earliest
        moment a wait could expire and re-arms itself while a later one is still running."""
        self._since = now = self.loop.time()
        self._limit = seconds
        due = now + seconds
        if self._guard is not None and self._guard.when() > due:
            self._guard.cancel()
            self._guard = None
        if self._guard is None:
            self._guard = self.loop.call_at(due, self._expire)

    def _expire(self) -> None:
        self._guard = None
        if self._limit is None:
            return  # between requests
        due = self._since + self._limit
        if due > self.loop.time():
            self._guard = self.loop.call_at(due, self._expire)
        elif not self.transport.is_closing():
            self.transport.close()


def protocol_class(idle_timeout: float, request_timeout: float) -> type[GuardedHttpTools]:
    """The protocol class with this server's deadlines baked in (uvicorn instantiates it per connection)."""
    return type("GuardedHttpTools", (GuardedHttpTools,),
                {"idle_timeout": idle_timeout, "request_timeout": request_timeout})
