"""``POST /rpc`` answered by the HTTP/1.1 connection itself, below the ASGI layers.

An ordinary ``POST /rpc`` — a JSON body of known length, from a client that is not a browser —
is what every HTTP client of ppy sends for every call, and going through ASGI costs it two tasks,
a scope, message dicts, Starlette's middleware and a coroutine per layer: more server CPU than
the call itself (docs/performance.md).  Here the connection hands such a request to
:class:`DirectRpc` once its body is in, which starts the call with
:meth:`Dispatcher.begin` (no task for a built-in or a fast sync function) and writes the reply
bytes when the call settles.

The semantics are the ASGI route's, decided by the same rules: :meth:`DirectRpc.takes` says yes
only when every check of ``HttpCalls.rpc`` would pass (``Host`` allowed, no ``Origin`` or
``Sec-Fetch-Site``, the token, a JSON ``Content-Type``, a body within the limits, not draining);
any other request, refusals included, takes the ASGI route, which words the error.  The reply is
byte for byte the one the ASGI route sends (``tests/test_http_direct.py`` compares them).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from ppy.errors import PpyError
from ppy.server.http.calls import HttpCalls, draining_error
from ppy.server.http.cycle import STATUS, Conn, DirectRequest, error_response
from ppy.server.http.edge import HostRule, bearer_token, is_json
from ppy.server.http.gzip import compressed
from ppy.wire import jsonrpc, jsonvalue
from ppy.wire.model import Call, Dialect

log = logging.getLogger("ppy.http")

_ENCODE = jsonvalue.encode
_HTTP = Dialect.HTTP
_JSON_HEAD = b"content-type: application/json\r\ncontent-length: %d\r\n"


class DirectRpc:
    """The shortcut of one app's HTTP listeners (see the module docstring)."""

    def __init__(self, calls: HttpCalls, hosts: HostRule) -> None:
        self.calls = calls
        self.state = calls.state
        self.dispatcher = calls.dispatcher
        self.hosts = hosts
        config = calls.config
        self.max_depth, self.max_batch = config.max_depth, config.max_batch
        self.max_frame_bytes = config.max_frame_bytes

    def takes(self, headers: list[tuple[bytes, bytes]], length: int) -> bool | None:
        """Whether a ``POST /rpc`` with these headers and a body of ``length`` bytes passes every check
        of the ASGI route: None when not, else whether the client accepts gzip."""
        if self.state.draining or length > self.max_frame_bytes:
            return None
        host = content_type = authorization = None
        gzip = False
        for name, value in headers:
            if name == b"host":
                if host is None:
                    host = value
            elif name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"accept-encoding":
                gzip = gzip or b"gzip" in value.lower()
            elif name == b"origin" or name == b"sec-fetch-site":
                return None  # a browser: the cross-site rules and CORS headers of the ASGI route
        if content_type is None or not is_json(content_type) or not self.hosts.allows(host):
            return None
        dispatcher = self.dispatcher
        if dispatcher.token is not None and not dispatcher.check_token(bearer_token(authorization)):
            return None
        return gzip

    def answer(self, conn: Conn, request: DirectRequest) -> None:
        """The whole request is in: start its call; the reply is written when it settles."""
        try:
            chunks = request.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            request.chunks = []
            items, batch = jsonrpc.parse(body, max_depth=self.max_depth, max_batch=self.max_batch)
            if self.state.draining:  # it began while the body arrived: refused as the ASGI route does
                rid = None if batch else items[0].id
                self._reply(conn, request, jsonrpc.encode_error(rid, draining_error()), 503)
                return
            if batch:
                self.state.spawn(self._batch(conn, request, items))
                return
            item = items[0]
            if isinstance(item, jsonrpc.Rejected):
                self._reply(conn, request, jsonrpc.encode_error(item.id, item.error))
                return
            try:
                started = self.dispatcher.begin(item, _HTTP, True, _ENCODE,
                                                functools.partial(self._settled, conn, request))
            except PpyError as exc:
                self._reply(conn, request, None if item.notify else jsonrpc.encode_error(item.id, exc))
                return
            if started is not None:
                self._reply(conn, request, None if item.notify else jsonrpc.encode_result(item.id, started))
        except Exception:
            self._failed(conn, request)

    def _settled(self, conn: Conn, request: DirectRequest, call: Call, outcome: bytes | PpyError) -> None:
        try:
            if call.notify:
                body = None
            elif isinstance(outcome, PpyError):
                body = jsonrpc.encode_error(call.id, outcome)
            else:
                body = jsonrpc.encode_result(call.id, outcome)
            self._reply(conn, request, body)
        except Exception:
            self._failed(conn, request)

    async def _batch(self, conn: Conn, request: DirectRequest, items: list[jsonrpc.Item]) -> None:
        try:
            replies = await asyncio.gather(*(self.calls.rpc_item(item) for item in items))
            out = [r for r in replies if r is not None]
            self._reply(conn, request, jsonrpc.encode_batch(out) if out else None)
        except asyncio.CancelledError:  # the drain deadline passed: as the ASGI route, a 500 and close
            self._failed(conn, request, logged=False)
            raise
        except Exception:
            self._failed(conn, request)

    def _reply(self, conn: Conn, request: DirectRequest, body: bytes | None, status: int = 200) -> None:
        """Write the reply the ASGI route would send (``reply`` or ``no_content`` through ``cycle``)."""
        if request.gone:
            return
        request.started = True
        if body is None:
            head = STATUS[204] + conn.listener.date() + b"content-length: 0\r\n"
            body = b""
        elif request.gzip and (packed := compressed(body)) is not None:
            head = (STATUS[status] + conn.listener.date() + b"content-type: application/json\r\n"
                    b"content-encoding: gzip\r\ncontent-length: %d\r\nvary: Accept-Encoding\r\n" % len(packed))
            body = packed
        else:
            head = STATUS[status] + conn.listener.date() + _JSON_HEAD % len(body)
        if conn.last or conn.broken:
            request.keep_alive = False
        if not request.keep_alive:
            head += b"connection: close\r\n\r\n"
        elif request.http10:
            head += b"connection: keep-alive\r\n\r\n"
        else:
            head += b"\r\n"
        request.done = True
        conn.write(head + body)
        conn.response_done(request)

    def _failed(self, conn: Conn, request: DirectRequest, logged: bool = True) -> None:
        if logged:
            log.exception("POST /rpc failed inside the server, from %s", conn.client)
        if not request.started and not request.gone:
            conn.write(error_response(500, "internal server error"))
        request.done = True
        conn.close()
