"""From a :class:`Call` to encoded result bytes, the same for every dialect.

Look-up, admission (``--max-inflight``), binding, running and encoding all
happen here, so the TCP and HTTP front ends cannot disagree on semantics;
they only render the bytes or the :class:`PpyError` in their own shape.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, cast

from ppy.app.discover import document
from ppy.app.function import Function
from ppy.app.registry import Registry
from ppy.config import Config
from ppy.errors import ApplicationError, InternalError, InvalidParams, Overloaded, PpyError, Unauthorized
from ppy.wire.model import Call

if TYPE_CHECKING:
    from ppy.app.streaming import Source

log = logging.getLogger("ppy.call")
access = logging.getLogger("ppy.access")

#: observer(method, dialect, error code or 0, seconds) — metrics hang off this.
Observer = Callable[[str, str, int, float], None]
Encoder = Callable[[Any], bytes]
#: then(call, encoded result or error): how a front end that passed it to begin() hears of the end.
Then = Callable[[Call, "bytes | PpyError"], None]


class Pending:
    """What :meth:`Dispatcher.begin` returns for a call it started with a callback: no task to await."""


PENDING = Pending()

UNAUTHORIZED = ("token required: authenticate first (lines: call rpc.auth with [token]; legacy: add a "
                '"token" key; HTTP: send Authorization: Bearer <token>)')


class Runner(Protocol):
    async def run(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float) -> Any: ...

    def start_sync(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float,
                   settle: Callable[[Any, PpyError | None], None]) -> bool:
        """Start the call with a callback instead of a task, if this runner can for this function."""
        ...

    def stream(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Source:
        """[stream hook] Start a generator function; its items are pulled (ppy.run.streams)."""
        ...

    def close(self) -> None: ...


def application_error(method: str, exc: BaseException, debug: bool) -> ApplicationError:
    """The error a client sees when a user function raised: its message and class name."""
    kind = type(exc).__name__
    data: dict[str, Any] = {"type": kind}
    if debug:
        data["traceback"] = "".join(traceback.format_exception(exc))
    err = ApplicationError(str(exc) or kind, data)
    err.__cause__ = exc
    return err


class Dispatcher:
    def __init__(self, config: Config, registry: Registry, runner: Runner, version: str) -> None:
        self.registry = registry
        self.runner = runner
        self.version = version
        self.timeout = config.timeout
        self.max_inflight = config.max_inflight
        self.max_frame_bytes = config.max_frame_bytes  # [stream hook] bounds a generator's collected list
        self.debug = config.debug
        self.legacy_str_params = config.legacy_str_params
        self.token = config.token
        self.access_log = config.access_log
        self.inflight = 0
        self.observers: list[Observer] = []
        #: [stream hook] stream_observer(method, outcome, items, seconds), ppy.app.streaming
        self.stream_observers: list[Callable[[str, str, int, float], None]] = []
        self._ids = itertools.count(1)
        self._discovery: tuple[Registry, dict[str, Any]] | None = None

    def swap(self, registry: Registry) -> None:
        """Atomically replace the method table: calls already running keep their functions."""
        self.registry = registry

    def check_token(self, token: Any) -> bool:
        if self.token is None:
            return True
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.token.encode())

    def discovery(self) -> dict[str, Any]:
        cached = self._discovery
        if cached is None or cached[0] is not self.registry:
            cached = (self.registry, document(self.registry, self.version))
            self._discovery = cached
        return cached[1]

    async def call(self, call: Call, dialect: str, authed: bool, encode: Encoder) -> bytes:
        """Run one call and return its encoded result, or raise a PpyError."""
        started = self.begin(call, dialect, authed, encode)  # no ``then``: never PENDING
        return started if isinstance(started, bytes) else await cast(Coroutine[Any, Any, bytes], started)

    def begin(self, call: Call, dialect: str, authed: bool, encode: Encoder,
              then: Then | None = None) -> bytes | Coroutine[Any, Any, bytes] | Pending:
        """Start one call: its encoded result when it finished at once, else a coroutine that finishes it.

        Built-ins and refused calls finish here, with no task, so front ends answer them straight from
        ``data_received`` (docs/performance.md).  A front end that passes ``then`` may instead get
        ``PENDING``: the runner took the call without a task (a sync function that was fast) and
        ``then`` receives its encoded result or error on the event loop.
        Raises PpyError when the call failed at once.
        """
        start = time.perf_counter()
        try:
            method = call.method
            if method.startswith("rpc."):
                result = self._builtin(call, authed)
            else:
                if not authed and self.token is not None:
                    raise Unauthorized(UNAUTHORIZED)
                fn = self.registry.lookup(method)
                params = call.params
                if dialect == "legacy" and self.legacy_str_params and isinstance(params, list):
                    params = [str(v) for v in params]
                args, kwargs = fn.bind(params)
                if self.inflight >= self.max_inflight:
                    raise Overloaded(f"{self.inflight} calls in flight, the server's --max-inflight; retry later",
                                     {"max_inflight": self.max_inflight})
                # Counted now, not when the coroutine first runs: a burst of requests decoded from one
                # read is admitted one by one, so --max-inflight holds for pipelined clients too.
                self.inflight += 1
                if then is not None and not fn.is_async and not fn.streams and self.runner.start_sync(
                        fn, args, kwargs, self._timeout(call), _Settle(self, call, dialect, start, encode, then)):
                    return PENDING
                return self._finish(call, dialect, start, fn, args, kwargs, encode)
            body = encode(result)
        except PpyError as exc:
            self._done(call, dialect, start, exc)
            raise
        self._done(call, dialect, start, None)
        return body

    async def _finish(self, call: Call, dialect: str, start: float, fn: Function, args: tuple[Any, ...],
                      kwargs: dict[str, Any], encode: Encoder) -> bytes:
        try:  # self.inflight was counted by begin()
            if fn.streams:  # [stream hook] a generator, for a caller that did not ask for a stream
                from ppy.app.streaming import collect

                body = await collect(self, fn, args, kwargs, self._timeout(call), encode)
            else:
                body = encode(await self.runner.run(fn, args, kwargs, self._timeout(call)))
        except PpyError as exc:
            self._done(call, dialect, start, exc)
            raise
        finally:
            self.inflight -= 1
        self._done(call, dialect, start, None)
        return body

    def _timeout(self, call: Call) -> float:
        return self.timeout if call.timeout is None else min(call.timeout, self.timeout)

    def _done(self, call: Call, dialect: str, start: float, exc: PpyError | None) -> None:
        """Log a failure, the access line when enabled, and feed the observers (metrics)."""
        code = 0
        if exc is not None:
            code = exc.code
            if isinstance(exc, (ApplicationError, InternalError)):
                rid = next(self._ids)
                exc.data.setdefault("request_id", rid)
                cause = exc.__cause__ or exc
                log.error("call %s failed (request_id=%s, %s): %s\n%s", call.method, rid, dialect,
                          exc.message, "".join(traceback.format_exception(cause)).rstrip())
        elapsed = time.perf_counter() - start
        if self.access_log:
            access.info("%s %s %s %.3fms", dialect, call.method, code or "ok", elapsed * 1000,
                        extra={"method": call.method, "dialect": dialect, "code": code,
                               "ms": round(elapsed * 1000, 3)})
        for observer in self.observers:
            observer(call.method, dialect, code, elapsed)

    def _builtin(self, call: Call, authed: bool) -> Any:
        method = call.method
        if method == "rpc.ping":
            return "pong"
        if method == "rpc.auth":
            params = call.params
            token = params.get("token") if isinstance(params, dict) else (params[0] if len(params) == 1 else None)
            if token is None:
                raise InvalidParams('rpc.auth takes one parameter: [token] or {"token": ...}', {"param": "token"})
            if not self.check_token(token):
                raise Unauthorized("wrong token: check the client's token against the server's --token-file")
            return True
        if not authed and self.token is not None:
            raise Unauthorized(UNAUTHORIZED)
        if method == "rpc.discover":
            return self.discovery()
        raise self.registry.not_found(method)


class _Settle:
    """The end of a call started with a callback: what :meth:`Dispatcher._finish` does after its ``await``."""

    __slots__ = ("call", "dialect", "dispatcher", "encode", "start", "then")

    def __init__(self, dispatcher: Dispatcher, call: Call, dialect: str, start: float, encode: Encoder,
                 then: Then) -> None:
        self.dispatcher, self.call, self.dialect, self.start, self.encode, self.then = (
            dispatcher, call, dialect, start, encode, then)

    def __call__(self, result: Any, error: PpyError | None) -> None:
        dispatcher = self.dispatcher
        dispatcher.inflight -= 1
        body = b""
        if error is None:
            try:
                body = self.encode(result)
            except PpyError as exc:
                error = exc
        dispatcher._done(self.call, self.dialect, self.start, error)
        self.then(self.call, body if error is None else error)
