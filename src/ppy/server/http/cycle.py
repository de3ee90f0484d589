"""One HTTP request/response cycle on a ppy HTTP/1.1 connection: the ASGI ``receive`` and ``send``.

The connection (:mod:`ppy.server.http.h1`) parses and feeds the body in;
this side hands it to the app, frames the reply (``Content-Length``, or
chunked when the app streams), strips the body of a ``HEAD`` reply, and says
``Connection: close`` when the connection will not take another request.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any, Protocol

from starlette.types import ASGIApp, Message

from ppy.server.tls import client_name

log = logging.getLogger("ppy.http")
STATUS = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus}


def error_response(status: int, message: str, code: int = -32600) -> bytes:
    """A whole reply made by the connection itself (no app involved), closing the connection."""
    body = b'{"error":{"code":%d,"message":"%s"}}' % (code, message.encode())
    return (STATUS[status] + b"content-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % len(body) + body)


class Dated(Protocol):
    def date(self) -> bytes: ...


class Conn(Protocol):
    """The HTTP/1.1 connection (:class:`ppy.server.http.h1.H1Connection`) as a request sees it."""

    loop: asyncio.AbstractEventLoop

    @property
    def listener(self) -> Dated: ...

    write_paused: bool
    last: bool  # the server is draining: close after this reply
    broken: bool  # the parser stopped mid-stream: close after this reply

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def body_taken(self) -> None: ...

    async def drained(self) -> None: ...

    def response_done(self, request: Request | DirectRequest) -> None: ...

    @property
    def client(self) -> str:
        """Who is connected, for logs."""


class Request:
    """One request/response cycle: the ASGI ``receive`` and ``send`` of one app call."""

    __slots__ = (
        "buffered",
        "chunked_out",
        "chunks",
        "complete",
        "conn",
        "done",
        "expect_continue",
        "final_sent",
        "gone",
        "head_only",
        "keep_alive",
        "scope",
        "start",
        "started",
        "waiter",
    )

    def __init__(self, conn: Conn, scope: dict[str, Any], keep_alive: bool, expect: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.final_sent = False
        self.waiter: asyncio.Future[None] | None = None
        self.gone = False
        self.expect_continue = expect
        self.start: Message | None = None
        self.started = False
        self.done = False
        self.chunked_out = False
        self.keep_alive = keep_alive
        self.head_only = scope["method"] == "HEAD"

    async def run(self, app: ASGIApp) -> None:
        """Run the app for this request; an app that fails, or returns without a whole reply, gets
        a 500 if nothing was sent yet, and the connection closes (the client cannot tell where a
        half-sent reply ends)."""
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("HTTP app failed on %s %s from %s", self.scope["method"], self.scope["path"], self.client)
            self._abandon()
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            return
        if not self.done and not self.gone:
            log.error("HTTP app returned without a complete reply on %s %s from %s", self.scope["method"],
                      self.scope["path"], self.client)
            self._abandon()

    @property
    def client(self) -> str:
        """Who sent the request, for logs."""
        return client_name(self.scope["client"], self.scope["extensions"].get("ppy.client_cert_subject"))

    def _abandon(self) -> None:
        if not self.started:
            self.conn.write(error_response(500, "internal server error"))
        self.conn.close()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> Message:
        while True:
            if self.chunks:
                body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
                self.chunks = []
                self.buffered = 0
                self.conn.body_taken()
                self.final_sent = self.complete
                return {"type": "http.request", "body": body, "more_body": not self.complete}
            if self.gone or self.done:
                return {"type": "http.disconnect"}
            if self.complete and not self.final_sent:
                self.final_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.expect_continue:
                self.expect_continue = False
                if not self.started:
                    self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiter = self.conn.loop.create_future()
            await self.waiter
            self.waiter = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.gone or self.done:
            return
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.start = message
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started:
            raise RuntimeError("http.response.body before http.response.start")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        out = b""
        if self.start is not None:
            out = self._head(body, more)
            self.start = None
        if self.head_only:
            body = b""
        if self.chunked_out:
            if body:
                out += b"%x\r\n" % len(body) + body + b"\r\n"
            if not more:
                out += b"0\r\n\r\n"
        else:
            out += body
        self.conn.write(out)
        if not more:
            self.done = True
            self.wake()  # a receive() waiting for a disconnect: the cycle is over
            self.conn.response_done(self)
        elif self.conn.write_paused:
            await self.conn.drained()

    def _head(self, body: bytes, more: bool) -> bytes:
        assert self.start is not None
        conn = self.conn
        lines = [STATUS.get(self.start["status"]) or b"HTTP/1.1 %d \r\n" % self.start["status"],
                 conn.listener.date()]
        has_length = False
        for name, value in self.start.get("headers", ()):
            low = name.lower()
            if low == b"content-length":
                has_length = True
            elif low == b"connection" and value.lower() == b"close":
                self.keep_alive = False
                continue
            elif low == b"transfer-encoding":
                continue  # this connection frames the body itself
            lines.append(b"%s: %s\r\n" % (name, value))
        if not has_length:
            if more:
                self.chunked_out = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                lines.append(b"content-length: %d\r\n" % len(body))
        if not self.complete or conn.last or conn.broken:
            self.keep_alive = False  # body left unread, or the server is draining
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        elif self.scope["http_version"] == "1.0":
            lines.append(b"connection: keep-alive\r\n")  # HTTP/1.0 closes unless told otherwise
        lines.append(b"\r\n")
        return b"".join(lines)


class Shortcut(Protocol):
    """Answers ``POST /rpc`` below the ASGI app when every check of the app's route would pass
    (:class:`ppy.server.http.direct.DirectRpc`)."""

    def takes(self, headers: list[tuple[bytes, bytes]], length: int) -> bool | None:
        """None: the app answers this request (of ``length`` body bytes); else the shortcut does
        (True: the client accepts gzip)."""

    def answer(self, conn: Conn, request: DirectRequest) -> None:
        """The request's body is all in: answer it, now or later, ending with ``conn.response_done``."""


class DirectRequest:
    """A request the listener's :class:`Shortcut` answers: the connection's view of it is a
    :class:`Request`'s (body chunks, complete, done, gone)."""

    __slots__ = ("buffered", "chunks", "complete", "done", "gone", "gzip", "http10", "keep_alive", "started")

    def __init__(self, keep_alive: bool, http10: bool, gzip: bool) -> None:
        self.keep_alive, self.http10, self.gzip = keep_alive, http10, gzip
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = self.done = self.gone = self.started = False

    def wake(self) -> None:
        """Nothing waits for a direct request's body: it is taken whole once complete."""
