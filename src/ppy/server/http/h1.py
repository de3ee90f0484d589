"""HTTP/1.1 connections for ``ppy serve``: httptools parsing, one request at a time, every wait bounded.

An asyncio protocol that runs any ASGI app (the Starlette app of
:mod:`ppy.server.http.app`), owning the limits an ASGI server leaves open:

* **Head size** — request line + headers at most :data:`MAX_HEAD` bytes and
  :data:`MAX_HEADERS` headers, else 431 and close.  The bytes are counted
  before they reach the parser, so a huge head is never kept.
* **One request at a time** — the connection hands the parser exactly one
  message (it finds the end of the head and of a ``Content-Length`` body
  itself); bytes past it wait, unparsed, and reading is paused until the
  reply is written.  A client pipelining megabytes costs one read buffer.
* **Whole-request deadline** — ``request_timeout`` from a request's first
  byte until its last, never reset by trickled bytes; ``idle_timeout``
  between requests (and from connect to the first byte).
* **Unread bodies** — a reply sent before the body was all received says
  ``Connection: close`` and the connection closes after it.
* **Unread replies** — while the client does not read (the transport's
  buffer is full) the next request waits; after ``send_timeout`` the
  connection is dropped.

The request/response cycle itself (``receive``, ``send``) is
:mod:`ppy.server.http.cycle`.

A chunked request body is fed in slices; its connection closes after the
reply (the end of a chunked body is only known to the parser).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httptools
from starlette.types import ASGIApp

from ppy.errors import Overloaded
from ppy.server.http.cycle import DirectRequest, Request, Shortcut, error_response
from ppy.server.tls import DecryptsInPlace, client_name, peer_subject

log = logging.getLogger("ppy.http")

MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
#: Body bytes received but not yet taken by the app before reading pauses.
BODY_HIGH_WATER = 64 * 1024
#: Slice fed to the parser for a chunked body (bounds what could follow it in one feed).
CHUNK_SLICE = 4096
#: The app reads the body under the same deadline; the connection is cut this long after it.
GRACE = 1.0

HEAD, BODY, CHUNKED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Limits:
    idle_timeout: float = 300.0
    request_timeout: float = 30.0
    max_connections: int = 1024
    send_timeout: float = 30.0  # a client that reads none of its waiting reply this long is dropped
    on_trip: Callable[[str], None] = lambda limit: None  # a limit refused a request (metrics)


class Listener:
    """What the connections of one listening socket share: the app, the limits, the open set."""

    def __init__(self, app: ASGIApp, limits: Limits, scheme: str = "http", shortcut: Shortcut | None = None) -> None:
        self.app = app
        self.limits = limits
        self.scheme = scheme
        self.shortcut = shortcut
        self.connections: set[H1Connection] = set()
        self.closing = False
        self._date = (0, b"")

    def factory(self) -> H1Connection:
        return TlsH1Connection(self) if self.scheme == "https" else H1Connection(self)

    def refusing(self) -> H1Connection:
        """A connection that answers 503 at once: the server is out of descriptors (ppy.server.openfiles)."""
        return H1Connection(self, refusal="server is out of file descriptors (the open-files limit, ulimit -n); "
                                          "retry shortly")

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._date[0]:
            self._date = (now, b"date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n")
        return self._date[1]

    def close_idle(self) -> None:
        """Drain: close connections between requests; the others close after their reply."""
        self.closing = True
        for conn in list(self.connections):
            conn.close_when_idle()


class Stop(Exception):
    """Raised from a parser callback to stop it at a message the connection will not handle."""


class HeadTooLarge(Exception):
    pass


class H1Connection(asyncio.BaseProtocol):  # not asyncio.Protocol: see tls.DecryptsInPlace
    """One HTTP/1.1 connection (see the module docstring for what it bounds)."""

    def __init__(self, listener: Listener, refusal: str | None = None) -> None:
        self.listener = listener
        self.refusal = refusal
        self.limits = listener.limits
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.sockname: Any = None
        self.peername: Any = None
        self.subject: str | None = None  # the client certificate's subject (HTTPS with --tls-client-ca)
        self.request: Request | DirectRequest | None = None
        self.task: asyncio.Task[None] | None = None
        self.phase = HEAD
        self.remaining = 0
        self.head_bytes = 0
        self.tail = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.pending = b""  # bytes received past the message being handled (unparsed)
        self.reading_paused = False
        self.write_paused = False
        self.write_waiter: asyncio.Future[None] | None = None
        self.closing = False
        self.last = False  # the server is draining: close after the current reply
        self.broken = False  # the parser stopped mid-stream: close after the current reply
        self.timer: asyncio.TimerHandle | None = None
        self.send_timer: asyncio.TimerHandle | None = None
        self.next_waiting = False
        self.due = 0.0
        self.timed = ""  # what the deadline guards: "idle", "request", or "" (a reply is being made)

    # -- the asyncio protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        self.sockname = transport.get_extra_info("sockname")
        self.peername = transport.get_extra_info("peername")
        if self.listener.scheme == "https":
            self.subject = peer_subject(transport)
            if self.subject is not None:
                log.info("TLS client %s connected to --https-port from %s", self.subject, self.peername)
        if self.refusal is not None or len(self.listener.connections) >= self.limits.max_connections:
            self.limits.on_trip("max_connections")
            self.write(error_response(503, self.refusal or f"server has {self.limits.max_connections} HTTP "
                                      "connections open (--max-connections); retry shortly", code=Overloaded.code))
            self.close()
            return
        self.listener.connections.add(self)
        self._deadline("idle", self.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        self.closing = True
        for timer in (self.timer, self.send_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.send_timer = None
        request = self.request
        if request is not None:
            request.gone = True
            request.wake()
        if self.write_waiter is not None and not self.write_waiter.done():
            self.write_waiter.set_result(None)

    def pause_writing(self) -> None:
        """The client is not reading: stop going on to its next request, and drop it if it never reads."""
        self.write_paused = True
        if self.send_timer is None:
            self.send_timer = self.loop.call_later(self.limits.send_timeout, self._send_expired)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None
        if self.write_waiter is not None and not self.write_waiter.done():
            self.write_waiter.set_result(None)
        if self.next_waiting:
            self.next_waiting = False
            self._next()

    def _send_expired(self) -> None:
        self.send_timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.info("HTTP client %s read none of its reply in %g s; connection dropped",
                     client_name(self.peername, self.subject), self.limits.send_timeout)
            self.closing = True
            self.transport.abort()

    def eof_received(self) -> bool | None:
        return None  # the client closed its side: the transport closes (a half-closed HTTP client gets no reply)

    def data_received(self, data: bytes) -> None:
        if self.timed == "idle":
            self._deadline("request", self.limits.request_timeout)
        self._feed(data)

    # -- parsing, one message at a time ----------------------------------------------------

    def _feed(self, data: bytes) -> None:
        while data and not self.closing:
            request = self.request
            if request is not None and request.complete:
                self.pending += data  # the next request waits until this reply is written
                self._pause_reading()
                return
            if self.phase == HEAD:
                if self.timed != "request":
                    self._deadline("request", self.limits.request_timeout)
                end = (self.tail + data).find(b"\r\n\r\n")
                cut = end + 4 - len(self.tail) if end >= 0 else len(data)
                if self.head_bytes + cut > MAX_HEAD:
                    self._refuse(431, f"request line and headers exceed {MAX_HEAD // 1024} KiB")
                    return
                piece, data = data[:cut], data[cut:]
                self.head_bytes += cut
                self.tail = (self.tail + piece)[-3:]
            elif self.phase == BODY:
                piece, data = data[:self.remaining], data[self.remaining:]
                self.remaining -= len(piece)
            else:
                piece, data = data[:CHUNK_SLICE], data[CHUNK_SLICE:]
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                self.broken = True  # no protocol switching here: answer the request, then close
                return
            except (httptools.HttpParserCallbackError, httptools.HttpParserError) as exc:
                if isinstance(exc.__context__, Stop):
                    self.broken = True
                    return
                if isinstance(exc.__context__, HeadTooLarge):
                    self._refuse(431, f"more than {MAX_HEADERS} headers")
                    return
                self._refuse(400, "malformed HTTP request: " + str(exc).replace('"', "'"))
                return
            if self.phase == CHUNKED and self.request is not None and self.request.complete:
                self.broken = True  # what follows a chunked body is not handled: close after the reply
                return

    def on_message_begin(self) -> None:
        if self.request is not None and self.request.complete:
            raise Stop  # a second message in one feed (only after odd framing): not handled
        self.headers = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            raise HeadTooLarge
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        expect = False
        length = -1
        chunked = False
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
        if chunked:
            self.phase = CHUNKED
        elif length > 0:
            self.phase = BODY
            self.remaining = length
        self.head_bytes = 0
        self.tail = b""
        method = parser.get_method()
        shortcut = self.listener.shortcut
        if (shortcut is not None and self.url == b"/rpc" and method == b"POST" and not chunked and not expect
                and 0 < length <= BODY_HIGH_WATER and (gzip := shortcut.takes(self.headers, length)) is not None):
            self.request = DirectRequest(parser.should_keep_alive(), parser.get_http_version() == "1.0", gzip)
            return
        path, _, query = self.url.partition(b"?")
        text = path.decode("latin-1")
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": parser.get_http_version(), "server": self.sockname,
            "client": self.peername, "scheme": self.listener.scheme,
            "method": method.decode("ascii"), "root_path": "",
            "path": unquote(text) if "%" in text else text, "raw_path": path,
            "query_string": query.partition(b"#")[0], "headers": self.headers,
            "extensions": {"ppy.request_deadline": self.due},
        }
        if self.subject is not None:
            scope["extensions"]["ppy.client_cert_subject"] = self.subject
        request = self.request = Request(self, scope, parser.should_keep_alive(), expect)
        self.task = self.loop.create_task(request.run(self.listener.app))  # referenced: asyncio keeps tasks weakly

    def on_body(self, body: bytes) -> None:
        request = self.request
        if request is None or request.done:
            return
        request.chunks.append(body)
        request.buffered += len(body)
        if request.buffered > BODY_HIGH_WATER:
            self._pause_reading()
        request.wake()

    def on_message_complete(self) -> None:
        self.phase = HEAD
        request = self.request
        if request is None:
            return
        request.complete = True
        self.timed = ""  # the request is in: its deadline is done, the reply has the call deadline
        if isinstance(request, DirectRequest):
            assert self.listener.shortcut is not None
            self.listener.shortcut.answer(self, request)  # ends in response_done, now or when the call ends
            return
        request.wake()
        if request.done:
            self._next()

    def body_taken(self) -> None:
        if self.reading_paused and not (self.request is not None and self.request.complete):
            self._resume_reading()

    # -- running the app and writing -----------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drained(self) -> None:
        if self.write_paused and not self.closing:
            self.write_waiter = self.loop.create_future()
            await self.write_waiter

    @property
    def client(self) -> str:
        """Who is connected, for logs."""
        return client_name(self.peername, self.subject)

    def response_done(self, request: Request | DirectRequest) -> None:
        if not request.keep_alive or self.broken or self.last:
            self.close()
            return
        if request.complete:
            if self.write_paused:
                self.next_waiting = True  # the next request waits until the client reads this reply
            else:
                self._next()

    def _next(self) -> None:
        """The reply is written and the request was all read: go on to the next one."""
        self.request = None
        self._deadline("idle", self.limits.idle_timeout)
        data, self.pending = self.pending, b""
        if data:
            self.data_received(data)
        if self.request is None or not self.request.complete:
            self._resume_reading()

    def close_when_idle(self) -> None:
        """Drain: close now between requests (or mid-head); a request being answered closes after its reply."""
        if self.request is None:
            self.close()
        else:
            self.last = True

    def _refuse(self, status: int, message: str) -> None:
        if status == 431:
            self.limits.on_trip("max_header_bytes")
        if self.request is None or not self.request.started:
            self.write(error_response(status, message + "; see docs/http.md"))
        self.close()

    def close(self) -> None:
        self.closing = True
        self.pending = b""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.transport.is_closing():
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.transport.is_closing():
            self.reading_paused = False
            self.transport.resume_reading()

    # -- deadlines ---------------------------------------------------------------------

    def _deadline(self, what: str, seconds: float) -> None:
        """Guard ``what`` for ``seconds``.  One timer per connection, moved lazily: it fires at the
        earliest moment the wait could expire and re-arms itself if the wait was moved later (a
        timer set and cancelled per request would cost more than the rest of a small request)."""
        self.timed = what
        self.due = due = self.loop.time() + seconds
        timer = self.timer
        if timer is not None and timer.when() > due:
            timer.cancel()
            timer = None
        if timer is None:
            self.timer = self.loop.call_at(due + (GRACE if what == "request" else 0.0), self._expire)

    def _expire(self) -> None:
        self.timer = None
        if not self.timed or self.closing:
            return
        due = self.due + (GRACE if self.timed == "request" else 0.0)
        if due > self.loop.time():
            self.timer = self.loop.call_at(due, self._expire)
        elif self.timed == "idle":
            self.close()
        else:
            if self.request is not None:  # its head was in: a stalled body (the ASGI route counts its own)
                self.limits.on_trip("request_timeout")
            self._refuse(408, f"request not received within {self.limits.request_timeout:g} s "
                              "(--request-timeout); send it in one go")


class TlsH1Connection(H1Connection, DecryptsInPlace):
    """An HTTPS connection: the event loop decrypts into one shared buffer (see DecryptsInPlace)."""
