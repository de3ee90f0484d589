"""gzip for replies over :data:`MIN_SIZE` when the client says ``Accept-Encoding: gzip``.

``/metrics`` is ~23 KB per scrape, the console page and the discovery
documents more, and a ``/call`` result can be anything; all of them are
text.  Starlette's ``GZipMiddleware`` wraps ``send`` for every request; this
one only looks at one header when the client does not ask for gzip, and
leaves small replies (a typical ``POST /rpc`` answer) and streamed replies
(several body messages, e.g. server-sent events) untouched.
"""

from __future__ import annotations

import gzip as gzip_module

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Smaller replies are sent as they are: a gzip header and trailer cost 18 bytes, and CPU.
MIN_SIZE = 1024
LEVEL = 6
COMPRESSIBLE = (b"application/json", b"text/", b"application/openmetrics-text", b"application/javascript")


def accepts_gzip(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"accept-encoding":
            return b"gzip" in value.lower()
    return False


class Gzip:
    """ASGI middleware (outermost, so every route gets it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not accepts_gzip(scope):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Compressing(send).send)


class _Compressing:
    __slots__ = ("inner", "passing", "start")

    def __init__(self, inner: Send) -> None:
        self.inner = inner
        self.start: Message | None = None
        self.passing = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        start = self.start
        if start is None or self.passing:
            await self.inner(message)
            return
        self.start = None
        body: bytes = message.get("body", b"")
        headers = list(start.get("headers", ()))
        if message.get("more_body", False) or len(body) < MIN_SIZE or not _compressible(headers):
            self.passing = True  # streamed, small, already encoded or not text: as it is
            await self.inner(start)
            await self.inner(message)
            return
        packed = compressed(body)
        assert packed is not None  # MIN_SIZE was checked above
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers += [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(packed)),
                    (b"vary", b"Accept-Encoding")]
        await self.inner({**start, "headers": headers})
        await self.inner({"type": "http.response.body", "body": packed})


def compressed(body: bytes) -> bytes | None:
    """The gzip form of a reply body, or None when it is too small to gain from it (under MIN_SIZE)."""
    if len(body) < MIN_SIZE:
        return None
    return gzip_module.compress(body, LEVEL, mtime=0)


def _compressible(headers: list[tuple[bytes, bytes]]) -> bool:
    kind = b""
    for key, value in headers:
        low = key.lower()
        if low == b"content-encoding":
            return False
        if low == b"content-type":
            kind = value.lower()
    return kind.startswith(COMPRESSIBLE)
