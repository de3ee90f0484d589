"""The HTTP edge shared by every route: guards (Host, token, Content-Type), bounded body reads, replies.

Written against raw ASGI rather than Starlette's ``Request``: the call routes
are the hot path, and the guards are a handful of header look-ups.

Security model (docs/http.md):

* **DNS rebinding** — a page on ``evil.example`` whose name resolves to
  127.0.0.1 can reach a loopback server, but its requests carry
  ``Host: evil.example``.  :class:`HostGuard` answers only Host names the
  server is known by: IP literals, ``localhost`` (and ``*.localhost``), the
  bound ``--host``, this machine's hostname, and ``--allowed-hosts``.
* **Cross-site requests** — a browser sends a cross-site POST without a
  CORS preflight only for ``text/plain``, form and multipart bodies (or no
  Content-Type at all), so every POST must say ``application/json``.
* **Cross-site calls** — :class:`BrowserRule`: ``/rpc`` and ``/call/...``
  refuse with 403 a request a browser marks as made by another site
  (``Sec-Fetch-Site: cross-site`` / ``same-site``, or an ``Origin`` that is
  not the server's own), unless ``--cors-origins`` lists that origin; then
  preflights are answered and CORS headers added.  Clients that are not
  browsers send neither header and are unaffected.
* **Token** — ``Authorization: Bearer <token>``, compared in constant time
  by the dispatcher's :meth:`~ppy.app.dispatch.Dispatcher.check_token`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterator

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ppy.app.dispatch import UNAUTHORIZED, Dispatcher
from ppy.errors import InvalidRequest, PpyError, Unauthorized
from ppy.run.threads import Resume
from ppy.server.state import ServerState
from ppy.wire import jsonrpc

#: The JSON-RPC over HTTP media types (application/json plus the two the JSON-RPC HTTP draft names).
#: None of them is a "simple" type, so a cross-site page cannot send them without a CORS preflight.
JSON_TYPES = frozenset({b"application/json", b"application/json-rpc", b"application/jsonrequest"})
JSON = b"application/json"


class Refusal(Exception):
    """A request refused at the edge, before dispatch: an HTTP status and the error to show."""

    def __init__(self, status: int, error: PpyError, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error
        self.headers = headers


def header(scope: Scope, name: bytes) -> bytes | None:
    """One request header (ASGI lower-cases names); the first if repeated."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def bearer(scope: Scope) -> str | None:
    return bearer_token(header(scope, b"authorization"))


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; None for no value or another scheme."""
    if authorization is None:
        return None
    scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def authed(scope: Scope, dispatcher: Dispatcher) -> bool:
    return dispatcher.token is None or dispatcher.check_token(bearer(scope))


def require_token(scope: Scope, dispatcher: Dispatcher) -> None:
    if not authed(scope, dispatcher):
        wrong = bearer(scope) is not None
        message = ("wrong token: check the client's token against the server's --token-file" if wrong
                   else UNAUTHORIZED)
        raise Refusal(401, Unauthorized(message), ((b"www-authenticate", b'Bearer realm="ppy"'),))


def is_json(content_type: bytes) -> bool:
    """Whether a ``Content-Type`` value names one of :data:`JSON_TYPES` (parameters such as charset aside)."""
    return content_type.split(b";", 1)[0].strip().lower() in JSON_TYPES


def require_json(scope: Scope) -> None:
    raw = header(scope, b"content-type") or b""
    if not is_json(raw):
        shown = raw.decode("latin-1") or "none"
        raise Refusal(415, InvalidRequest(
            f"Content-Type must be application/json, got {shown}; send the header "
            "'Content-Type: application/json' (other types are refused to stop cross-site requests)"))


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit`` (before reading it)."""
    declared = header(scope, b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refusal(400, InvalidRequest("Content-Length is not a number; send the body's size in bytes"))
        if int(declared) > limit:
            raise Refusal(413, _too_large(int(declared), limit))
    # A body that came with its headers is read without arming the deadline: a timer costs ~4 µs
    # per request (7% of an HTTP call's server CPU).  Only a read that has to wait runs under it.
    reading = _receive_body(receive, limit)
    try:
        waiting = reading.send(None)
    except StopIteration as done:
        body: bytes = done.value
        return body
    # Served by ppy, the deadline runs from the request's first byte (h1.py); elsewhere from here.
    extensions = scope.get("extensions") or {}
    due = extensions.get("ppy.request_deadline")
    try:
        async with asyncio.timeout_at(due) if due is not None else asyncio.timeout(timeout):
            body = await Resume(reading, waiting)
    except TimeoutError:
        raise Refusal(408, InvalidRequest(
            f"request body not received within {timeout:g} s (--request-timeout); send it in one go")) from None
    return body


async def _receive_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refusal(400, InvalidRequest("client went away before sending the whole body"))
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refusal(413, _too_large(size, limit))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: int, limit: int) -> InvalidRequest:
    return InvalidRequest(f"request body of {size} bytes or more exceeds --max-frame-bytes ({limit}); "
                          "send less data per call", {"max_frame_bytes": limit})


async def reply(send: Send, status: int, body: bytes, content_type: bytes = JSON,
                headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *headers]})
    await send({"type": "http.response.body", "body": body})


async def no_content(send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def error_body(error: PpyError) -> bytes:
    """``{"error": {"code", "message", "data"}}`` — the /call and plain-route error shape."""
    try:
        return msgspec.json.encode({"error": jsonrpc.error_object(error)})
    except (TypeError, ValueError):  # data a user exception carried that JSON cannot hold
        return msgspec.json.encode({"error": {"code": error.code, "message": error.message}})


@contextlib.contextmanager
def tracked(state: ServerState) -> Iterator[None]:
    """Count this request's task among the calls the drain waits for (so none is lost on SIGTERM)."""
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - ASGI servers always run requests in tasks
        yield
        return
    state.tasks.add(task)
    try:
        yield
    finally:
        state.tasks.discard(task)


class HostRule:
    """Which ``Host`` header values the server answers (see the module docstring)."""

    def __init__(self, bound_host: str, allowed: str) -> None:
        names = {n.strip().lower().rstrip(".") for n in allowed.split(",") if n.strip()}
        self.any = "*" in names
        names |= {"localhost", bound_host.lower().rstrip("."), socket.gethostname().lower()}
        self.names = frozenset(names)
        self._seen: dict[bytes, bool] = {}  # a client sends the same Host every time: decide once

    def allows(self, value: bytes | None) -> bool:
        if self.any or value is None:  # no Host at all: not a browser (every browser sends one)
            return True
        verdict = self._seen.get(value)
        if verdict is None:
            if len(self._seen) >= 256:  # bounded: clients cannot grow it with made-up names
                self._seen.clear()
            verdict = self._seen[value] = self._decide(value)
        return verdict

    def _decide(self, value: bytes) -> bool:
        host = value.decode("latin-1").strip().lower()
        if host.startswith("["):
            host = host[1:].partition("]")[0]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        host = host.rstrip(".")
        if host in self.names or host.endswith(".localhost"):
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True  # an IP literal cannot be re-pointed by DNS


RefuseRpc = Callable[[Scope, Receive, Send, Refusal, "bytes | None"], Awaitable[None]]


class HostGuard:
    """ASGI middleware refusing requests whose ``Host`` the server is not known by (DNS rebinding).

    It also hands ``POST /rpc`` straight to ``rpc``, past Starlette's exception middleware, router
    and route wrappers: they cost ~10% of a fast call's server CPU and that route needs none of them
    (it answers every error itself).  Only an unmounted app (empty ``root_path``) takes the short
    cut; a mounted one routes as usual.  Unexpected errors still reach Starlette's 500 handler.
    """

    def __init__(self, app: ASGIApp, rule: HostRule, rpc: ASGIApp | None = None,
                 refuse_rpc: RefuseRpc | None = None) -> None:
        self.app = app
        self.rule = rule
        self.rpc = rpc
        self.refuse_rpc = refuse_rpc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.rule.allows(header(scope, b"host")):
            shown = (header(scope, b"host") or b"").decode("latin-1")
            refusal = Refusal(400, InvalidRequest(
                f"Host {shown!r} is not a name this server answers to (DNS-rebinding guard); "
                "use an IP address or localhost, or start the server with --allowed-hosts NAME"))
            if self.refuse_rpc is not None and scope.get("path", "").endswith("/rpc"):
                await self.refuse_rpc(scope, receive, send, refusal, None)  # a JSON-RPC response, with the id
            else:
                await reply(send, refusal.status, error_body(refusal.error))
            return
        if (self.rpc is not None and scope.get("path") == "/rpc" and scope.get("method") == "POST"
                and not scope.get("root_path")):
            await self.rpc(scope, receive, send)
            return
        await self.app(scope, receive, send)


#: What a browser may send to a listed origin's calls (and what a preflight is told).
CORS_HEADERS = b"Authorization, Content-Type"
CORS_MAX_AGE = b"600"


class BrowserRule:
    """Which browser-made requests may reach the call routes (see the module docstring)."""

    def __init__(self, cors_origins: str) -> None:
        names = {o.strip().rstrip("/").lower() for o in cors_origins.split(",") if o.strip()}
        self.any = "*" in names
        self.origins = frozenset(n.encode("latin-1") for n in names if n != "*")

    def check(self, scope: Scope) -> bytes | None:
        """The origin to name in CORS headers (a listed one), None to run as is, or :class:`Refusal` 403."""
        origin = site = host = None
        for key, value in scope["headers"]:
            if key == b"origin":
                origin = value
            elif key == b"sec-fetch-site":
                site = value
            elif key == b"host":
                host = value
        if origin is None and site is None:
            return None  # not a browser (or a browser's same-origin GET)
        if origin is not None:
            if self.listed(origin):
                return bytes(origin)
            if _same_origin(origin, host) and site not in (b"cross-site", b"same-site"):
                return None
        elif site not in (b"cross-site", b"same-site"):
            return None  # same-origin, or "none" (typed in the address bar, a bookmark)
        shown = (origin or b"another site").decode("latin-1")
        raise Refusal(403, InvalidRequest(
            f"cross-site request refused: a page on {shown} may not call this server's functions from a "
            "browser; if that page should, start the server with --cors-origins ORIGIN"))

    def listed(self, origin: bytes) -> bool:
        return self.any or origin.lower().rstrip(b"/") in self.origins


def _same_origin(origin: bytes, host: bytes | None) -> bool:
    """``Origin: http://name:port`` names the server itself when its host part is the ``Host`` header
    (the scheme is not compared: a TLS-terminating proxy in front speaks HTTP to ppy)."""
    if host is None:
        return False
    _, sep, rest = origin.lower().partition(b"://")
    return bool(sep) and _no_default_port(rest) == _no_default_port(host.lower().strip())


def _no_default_port(netloc: bytes) -> bytes:
    for suffix in (b":80", b":443"):
        if netloc.endswith(suffix):
            return netloc[: -len(suffix)]
    return netloc


def cors_headers(origin: bytes, methods: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"access-control-allow-origin", origin), (b"vary", b"Origin"),
            (b"access-control-allow-methods", methods), (b"access-control-allow-headers", CORS_HEADERS))


def with_cors(send: Send, origin: bytes, methods: bytes) -> Send:
    """``send`` with the CORS headers added to the reply (for an origin --cors-origins lists)."""
    extra = cors_headers(origin, methods)

    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return send_with_cors


async def preflight(scope: Scope, send: Send, rule: BrowserRule, methods: bytes) -> None:
    """``OPTIONS``: a CORS preflight from a listed origin gets 204 and the CORS headers; others 403."""
    origin = header(scope, b"origin")
    allow = ((b"allow", methods),)
    if origin is None:
        await send({"type": "http.response.start", "status": 204, "headers": list(allow)})
    elif rule.listed(origin):
        await send({"type": "http.response.start", "status": 204,
                    "headers": [*allow, *cors_headers(origin, methods), (b"access-control-max-age", CORS_MAX_AGE)]})
    else:
        error = InvalidRequest(f"cross-site request refused: {origin.decode('latin-1')} is not in --cors-origins")
        await reply(send, 403, error_body(error))
        return
    await send({"type": "http.response.body", "body": b""})
