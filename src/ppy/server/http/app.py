"""HTTP: the ASGI application of SPEC §3, and uvicorn serving it inside ``ppy serve``'s own event loop.

:func:`create_app` builds a Starlette app around a :class:`ServerState` —
the same registry, dispatcher (limits, token, error model) and connection
counts the TCP listener uses — so it can be served in-process by
:func:`start`, mounted in FastAPI/Starlette, or run by any ASGI server::

    uvicorn --factory 'ppy.server.http:create_app'          # PPY_APP_DIR etc. from the environment
    app.mount("/py", create_app("app", allowed_hosts="*"))   # inside an existing app

Routes: ``POST /rpc``, ``GET|POST /call/{entry}/{func}``, ``GET|POST /stream/{entry}/{func}``, ``GET /`` (the
console), ``GET /openrpc.json``, ``GET /metrics``, ``GET /healthz``,
``GET /readyz``, ``GET /console/stats.json`` (the console's live data).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from pathlib import Path
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
from ppy.errors import MethodNotFound, PpyError
from ppy.server.http.calls import HttpCalls
from ppy.server.http.edge import HostGuard, HostRule, Refusal, error_body, reply, require_token
from ppy.server.http.stream import HttpStreams
from ppy.server.observe import console
from ppy.server.observe import shared as multiproc
from ppy.server.observe.metrics import Metrics
from ppy.server.observe.stats import Stats
from ppy.server.state import ServerState

log = logging.getLogger("ppy.http")
#: Same listen backlog as the TCP side (server/main.py).
BACKLOG = 4096


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
            body, content_type = self.metrics.render(accept)
            await reply(send, 200, body, content_type.encode())

    async def stats_json(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._guarded(scope, send):
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
    """The ASGI app of SPEC §3.

    ``ppy serve`` passes its own ``state``.  Standalone (another ASGI server,
    or mounted in FastAPI) it builds one from ``app_dir`` and ``options`` —
    any :class:`ppy.config.Config` field, e.g. ``token_file``,
    ``allowed_hosts="*"`` — over the ``PPY_*`` environment variables.
    """
    if state is None:
        from ppy.server.main import build_state

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
    app = Starlette(
        routes=[
            Route("/rpc", Asgi(calls.rpc), methods=["POST"]),
            Route("/call/{entry}/{func}", Asgi(calls.call), methods=["GET", "POST"]),
            Route("/stream/{entry}/{func}", Asgi(HttpStreams(calls).stream), methods=["GET", "POST"]),  # SSE
            Route("/", Asgi(routes.index), methods=["GET"]),
            Route("/openrpc.json", Asgi(routes.openrpc), methods=["GET"]),
            Route("/metrics", Asgi(routes.metrics_text), methods=["GET"]),
            Route("/healthz", Asgi(routes.healthz), methods=["GET"]),
            Route("/readyz", Asgi(routes.readyz), methods=["GET"]),
            Route("/console/stats.json", Asgi(routes.stats_json), methods=["GET"]),
        ],
        middleware=[Middleware(HostGuard, rule=HostRule(state.config.host, state.config.allowed_hosts),
                               rpc=calls.rpc)],
        exception_handlers={404: _not_found, 405: _not_found},
    )
    app.state.ppy = state
    app.state.metrics = metrics
    return app


# -- serving it inside ``ppy serve`` --------------------------------------------------------


class HttpServer:
    """What ``ppy serve`` closes on SIGTERM (asyncio-server-like ``close()``).

    During the drain HTTP keeps answering, so probes see ``/readyz`` 503 and new
    calls get 503 instead of a refused connection, until every call in flight
    (TCP or HTTP) is answered; then uvicorn shuts down, finishing responses it
    is writing.  The serving task is one of ``state.tasks``, so the drain waits
    for all of that, bounded by its own deadline.
    """

    def __init__(self, server: Any, state: ServerState, task: asyncio.Task[Any]) -> None:
        self.server = server
        self.state = state
        self.task = task
        self.sockets: list[socket.socket] = []
        self._stopping: asyncio.Task[None] | None = None

    def close(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop_when_idle())

    async def _stop_when_idle(self) -> None:
        while True:  # each pass waits for a set of calls that all end by their deadline
            others = {t for t in self.state.tasks if t is not self.task}
            if not others:
                break
            await asyncio.wait(others)
        self.server.should_exit = True


async def start(state: ServerState) -> HttpServer:
    """Serve :func:`create_app` with uvicorn (httptools) on ``--http-port``, in the running event loop.

    uvicorn's ``serve()`` would install its own SIGTERM/SIGINT handlers and its
    ``startup()`` exits the process when a bind fails, so ppy binds the sockets
    itself and drives uvicorn's startup / main loop / shutdown directly; ppy's
    drain stays in charge of signals.  uvicorn's access log is off: the
    dispatcher logs calls once, for every dialect.  The protocol is uvicorn's
    httptools one plus the connect and header deadlines (http_protocol.py).
    """
    import uvicorn

    from ppy.server.http.protocol import protocol_class
    from ppy.server.main import SERVICE_TASK, bind_tcp

    config = state.config
    app = create_app(state=state)
    # A --workers child shares the sockets its supervisor bound (see ppy.server.workers.supervisor).
    sockets = state.listen_sockets.get("http") or bind_tcp(config.host, config.http_port, "--http-port")
    uv_config = uvicorn.Config(
        app, http=protocol_class(config.idle_timeout, config.request_timeout), ws="none", lifespan="off",
        interface="asgi3",
        access_log=False, log_config=None, server_header=False, proxy_headers=False, backlog=BACKLOG,
        timeout_keep_alive=math.ceil(config.idle_timeout), limit_concurrency=config.max_connections,
        timeout_graceful_shutdown=math.ceil(config.timeout) + 1)
    uv_config.load()
    server = uvicorn.Server(uv_config)
    server.lifespan = uv_config.lifespan_class(uv_config)
    await server.startup(sockets=sockets)
    app.state.metrics.http_connections = lambda: len(server.server_state.connections)

    async def serve() -> None:
        try:
            await server.main_loop()
        finally:
            await server.shutdown()
            for sock in sockets:
                sock.close()

    task = state.spawn(serve())
    task.set_name(SERVICE_TASK)  # the drain waits for it, but does not count it as a call
    handle = HttpServer(server, state, task)
    handle.sockets = sockets
    return handle
