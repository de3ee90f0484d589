"""HTTP: the ASGI application of docs/http.md, and serving it inside ``ppy serve``'s own event loop (h1.py).

:func:`create_app` builds a Starlette app around a :class:`ServerState` —
the same registry, dispatcher (limits, token, error model) and connection
counts the TCP listener uses — so it can be served in-process by
:func:`start`, mounted in FastAPI/Starlette, or run by any ASGI server::

    uvicorn --factory 'ppy.server.http:create_app'          # PPY_APP_DIR etc. from the environment
    app.mount("/py", create_app("app", allowed_hosts="*"))   # inside an existing app

Routes: ``POST /rpc``, ``GET|POST /call/{entry}/{func}``, ``GET|POST /stream/{entry}/{func}``, ``GET /`` (the
console), ``GET /openrpc.json``, ``GET /metrics``, ``GET /healthz``,
``GET /readyz``, ``GET /console/stats.json`` (the console's live data),
``GET /openapi.json`` (OpenAPI 3.1 for ``/call``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from ssl import SSLContext
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ppy import config as cfg
from ppy.app import openapi as openapi_doc
from ppy.errors import MethodNotFound, PpyError
from ppy.server.http.calls import HttpCalls
from ppy.server.http.direct import DirectRpc
from ppy.server.http.edge import HostGuard, HostRule, Refusal, error_body, reply, require_token
from ppy.server.http.gzip import Gzip
from ppy.server.http.h1 import Limits, Listener
from ppy.server.http.stream import HttpStreams
from ppy.server.observe import console
from ppy.server.observe import shared as multiproc
from ppy.server.observe.metrics import Metrics
from ppy.server.observe.stats import Stats
from ppy.server.openfiles import Acceptor
from ppy.server.state import SERVICE_TASK, ServerState

log = logging.getLogger("ppy.http")


class Asgi:
    """Marks a coroutine as a raw ASGI endpoint (Starlette would wrap a plain function as Request → Response)."""

    __slots__ = ("fn",)

    def __init__(self, fn: ASGIApp) -> None:
        self.fn = fn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.fn(scope, receive, send)


class Routes:
    """The plain (non-call) routes; each is a raw ASGI app so none pays for a Request object."""

    def __init__(self, state: ServerState, metrics: Metrics, stats: Stats) -> None:
        self.state = state
        self.metrics = metrics
        self.stats = stats
        self.share = multiproc.StatsShare(stats) if multiproc.enabled() else None
        self.page = console.Page()
        self._openrpc: tuple[object, bytes] | None = None
        self._openapi: tuple[object, bytes] | None = None

    async def _guarded(self, scope: Scope, send: Send) -> bool:
        try:
            require_token(scope, self.state.dispatcher)
        except Refusal as exc:
            await reply(send, exc.status, error_body(exc.error), headers=exc.headers)
            return False
        return True

    async def healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        await reply(send, 200, b'{"status":"ok"}')

    async def readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        if state.ready and not state.draining:
            await reply(send, 200, b'{"status":"ready"}')
        else:
            await reply(send, 503, b'{"status":"draining"}' if state.draining else b'{"status":"starting"}')

    async def openrpc(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._guarded(scope, send):
            await reply(send, 200, self._discovery())

    async def openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._guarded(scope, send):
            dispatcher = self.state.dispatcher
            cached = self._openapi
            if cached is None or cached[0] is not dispatcher.registry:
                doc = openapi_doc.document(dispatcher.registry, dispatcher.version, token=dispatcher.token is not None)
                cached = self._openapi = (dispatcher.registry, msgspec.json.encode(doc))
            await reply(send, 200, cached[1])

    def _discovery(self) -> bytes:
        dispatcher = self.state.dispatcher
        cached = self._openrpc
        if cached is None or cached[0] is not dispatcher.registry:
            cached = (dispatcher.registry, msgspec.json.encode(dispatcher.discovery()))
            self._openrpc = cached
        return cached[1]

    async def metrics_text(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._guarded(scope, send):
            accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None)
            self.state.dispatcher.flush_observations()  # the calls answered in this loop turn count too
            body, content_type = self.metrics.render(accept)
            await reply(send, 200, body, content_type.encode())

    async def stats_json(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._guarded(scope, send):
            self.state.dispatcher.flush_observations()
            snapshot = self.stats.snapshot(self.share.others() if self.share is not None else ())
            snapshot["inflight"] = self.state.dispatcher.inflight
            snapshot["ready"] = self.state.ready and not self.state.draining
            await reply(send, 200, msgspec.json.encode(snapshot), headers=((b"cache-control", b"no-store"),))

    async def index(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Without the token the page still loads, with 401: it holds no app data, only the code that asks
        # for the token and then fetches everything else with it.
        try:
            require_token(scope, self.state.dispatcher)
            status = 200
        except Refusal:
            status = 401
        await reply(send, status, self.page.html, b"text/html; charset=utf-8", headers=self.page.headers(status))


def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see docs/http.md for each route's methods"
    else:
        message = (f"no route {request.method} {request.url.path}: use POST /rpc, GET|POST /call/{{entry}}/{{func}}, "
                   "GET /openrpc.json, /metrics, /healthz, /readyz or / (the console)")
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    return Response(error_body(MethodNotFound(message) if status == 404 else PpyError(message)), status,
                    headers=headers, media_type="application/json")


def create_app(app_dir: str | Path | None = None, *, state: ServerState | None = None,
               **options: Any) -> Starlette:
    """The ASGI app of docs/http.md: the call routes, the console, discovery, metrics and probes.

    ``ppy serve`` passes its own ``state``.  Standalone (another ASGI server,
    or mounted in FastAPI) it builds one from ``app_dir`` and ``options`` —
    any :class:`ppy.config.Config` field, e.g. ``token_file``,
    ``allowed_hosts="*"`` — over the ``PPY_*`` environment variables.
    """
    if state is None:
        from ppy.server.state import build_state

        values = cfg.from_env()
        if app_dir is not None:
            values["app_dir"] = Path(app_dir)
        values.update(options)
        config = cfg.Config(**values)
        cfg.validate(config)
        state = build_state(config)
        state.ready = True  # the registry is loaded: nothing else to wait for
    metrics = Metrics(state)
    stats = Stats(metrics.known)
    state.dispatcher.observers += [metrics.observer, stats.observe]
    calls = HttpCalls(state, metrics)
    routes = Routes(state, metrics, stats)
    hosts = HostRule(state.config.host, state.config.allowed_hosts)
    app = Starlette(
        routes=[
            # Every method reaches the call routes: they answer OPTIONS (CORS) and refuse the others,
            # HEAD included (a method list with GET would let HEAD run the function).
            Route("/rpc", Asgi(calls.rpc)),
            Route("/call/{entry}/{func}", Asgi(calls.call)),
            Route("/stream/{entry}/{func}", Asgi(HttpStreams(calls).stream)),  # SSE (docs/streaming.md)
            Route("/", Asgi(routes.index), methods=["GET"]),
            Route("/openrpc.json", Asgi(routes.openrpc), methods=["GET"]),
            Route("/openapi.json", Asgi(routes.openapi), methods=["GET"]),
            Route("/metrics", Asgi(routes.metrics_text), methods=["GET"]),
            Route("/healthz", Asgi(routes.healthz), methods=["GET"]),
            Route("/readyz", Asgi(routes.readyz), methods=["GET"]),
            Route("/console/stats.json", Asgi(routes.stats_json), methods=["GET"]),
        ],
        middleware=[Middleware(Gzip),  # outermost: the /rpc short cut in HostGuard gets it too
                    Middleware(HostGuard, rule=hosts,
                               rpc=calls.rpc, refuse_rpc=calls.refuse_rpc)],
        exception_handlers={404: _not_found, 405: _not_found},
    )
    app.state.ppy = state
    app.state.metrics = metrics
    app.state.direct = DirectRpc(calls, hosts)  # POST /rpc below ASGI, in ppy's own HTTP server
    return app


# -- serving it inside ``ppy serve`` --------------------------------------------------------


class HttpServer:
    """What ``ppy serve`` closes on SIGTERM (asyncio-server-like ``close()``).

    During the drain HTTP keeps answering, so probes see ``/readyz`` 503 and new
    calls get 503 instead of a refused connection, until every call in flight
    (TCP or HTTP) is answered; then the listening sockets close, idle
    connections close, and replies being written finish.  The serving task is
    one of ``state.tasks``, so the drain waits for all of that, bounded by its
    own deadline.
    """

    def __init__(self, state: ServerState, listener: Listener) -> None:
        self.state = state
        self.listeners = [listener]  # an HTTPS listener of the same app can be added
        self.servers: list[Acceptor] = []
        self.sockets: list[socket.socket] = []
        self.app: Starlette | None = None
        self._stop = asyncio.Event()
        self.task = state.spawn(self._serve())

    @property
    def open_connections(self) -> int:
        """HTTP connections still open: a handover's grace waits for keep-alive clients to leave."""
        return sum(len(listener.connections) for listener in self.listeners)

    def close(self) -> None:
        self._stop.set()

    async def _serve(self) -> None:
        await self._stop.wait()
        while True:  # each pass waits for a set of calls that all end by their deadline
            # Calls only: another HTTP(S) server's serving task waits for this one's in turn.
            others = {t for t in self.state.tasks if t is not self.task and t.get_name() != SERVICE_TASK}
            if not others:
                break
            await asyncio.wait(others)
        for server in self.servers:
            server.close()
        for listener in self.listeners:
            listener.close_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.state.config.timeout + 1
        while any(listener.connections for listener in self.listeners) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for listener in self.listeners:
            for conn in list(listener.connections):
                if conn.transport is not None:
                    conn.transport.abort()


async def start(state: ServerState, bind_tcp: Callable[[str, int, str], list[socket.socket]], *,
                sockets: list[socket.socket] | None = None, ssl: SSLContext | None = None,
                app: Starlette | None = None) -> HttpServer:
    """Serve :func:`create_app` on ``--http-port`` in the running event loop, with ppy's own HTTP/1.1
    connections (:mod:`ppy.server.http.h1`: head limits, one request at a time, whole-request deadline).
    ppy's drain stays in charge of signals; the dispatcher logs calls once, for every dialect.
    ``bind_tcp`` is the server's own binding, passed in so this module does not import ppy.server.main.

    HTTPS (``--https-port``) is the same call given its listening ``sockets``, the server's ``ssl``
    context and the ``app`` the plain port already serves (one app: metrics count each call once).
    """
    config = state.config
    first = app is None  # the first server of this app reports the open-connection count
    app = app or create_app(state=state)
    metrics: Metrics = app.state.metrics
    # A --workers child shares the sockets its supervisor bound (see ppy.server.workers.supervisor).
    sockets = sockets or state.listen_sockets.get("http") or bind_tcp(config.host, config.http_port, "--http-port")
    limits = Limits(idle_timeout=config.idle_timeout, request_timeout=config.request_timeout,
                    max_connections=config.max_connections, on_trip=metrics.trip,
                    send_timeout=config.send_timeout)
    listener = Listener(app, limits, scheme="https" if ssl is not None else "http", shortcut=app.state.direct)
    handle = HttpServer(state, listener)
    handle.task.set_name(SERVICE_TASK)  # the drain waits for it, but does not count it as a call
    handle.sockets = sockets
    handle.app = app
    for sock in sockets:
        # The TLS handshake is bounded by --request-timeout (asyncio's default is 60 s), as on --tls-port.
        handle.servers.append(Acceptor(sock, listener.factory, listener.refusing, ssl=ssl,
                                       handshake_timeout=config.request_timeout,
                                       max_handshakes=config.max_connections, scheme=listener.scheme))
    if first:
        metrics.http_connections = lambda: len(listener.connections)
    return handle
