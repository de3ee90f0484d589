"""From a :class:`Call` to encoded result bytes, the same for every dialect.

Look-up, admission (``--max-inflight``), binding, running and encoding all
happen here, so the TCP and HTTP front ends cannot disagree on semantics;
they only render the bytes or the :class:`PpyError` in their own shape.

Every call that is admitted takes one in-flight slot and is represented by
a :class:`CallHandle`.  The handle completes exactly once — with a result,
an error or its deadline — through :meth:`CallHandle.settle`, which is the
only place that gives the slot back, logs, feeds the metrics and hands the
reply to the front end.  Whatever ran the call (a built-in, a thread-lane
callback, the CPU gate, an isolated worker, an ``async def`` task) ends
there, and nothing a user function raises or returns can skip it.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from ppy.app.discover import document
from ppy.app.function import Function
from ppy.app.registry import Registry
from ppy.app.runner import CUT_OFF, Runner, describe
from ppy.app.source import collect
from ppy.config import Config
from ppy.errors import ApplicationError, CallTimeout, InternalError, InvalidParams, Overloaded, PpyError, Unauthorized
from ppy.wire import jsonvalue
from ppy.wire.model import Call

log = logging.getLogger("ppy.call")
_perf_counter = time.perf_counter  # a global: read twice per call
access = logging.getLogger("ppy.access")

#: Finished calls as observers see them: (method as sent, dialect, error code or 0) -> the seconds
#: each such call took.  Grouped, so an observer looks its row up once per kind of call, not per call.
Observations = dict[tuple[str, str, int], list[float]]
#: observer(observations) — metrics and the console's statistics hang off this.  Calls reach observers
#: in batches, the calls finished in one event-loop turn together (see Dispatcher.flush_observations).
Observer = Callable[[Observations], None]
#: Calls kept before they are handed over even within one loop turn: bounds what is held.
OBSERVE_BATCH = 1024
Encoder = Callable[[Any], bytes]
#: then(call, encoded result or error): how a front end that passed it to begin() hears of the end.
Then = Callable[[Call, "bytes | PpyError"], None]

UNAUTHORIZED = ("token required: authenticate first (lines: call rpc.auth with [token]; legacy: add a "
                '"token" key; HTTP: send Authorization: Bearer <token>)')


class CallHandle(msgspec.Struct):
    """One admitted call, holding one in-flight slot until :meth:`settle` runs (exactly once).

    ``then`` (when a front end passed one) receives the encoded result or the error.  A runner that
    starts the call with a callback gets :meth:`settle` as that callback; a task awaits the runner
    and calls it.  A ``msgspec.Struct`` so that the one made per call is built in C, not by a Python
    ``__init__`` (as ``Call`` is, wire/model.py).
    """

    dispatcher: Dispatcher
    call: Call
    dialect: str
    start: float
    encode: Encoder
    then: Then | None
    fn: Function  # what runs: the function and its bound arguments
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    finished: bool = False
    task: asyncio.Task[Any] | None = None  # the task running it, if begin() started one

    def settle(self, result: Any, error: BaseException | None) -> bytes | PpyError | None:
        """Complete the call: release the slot, encode, log, observe, and hand the reply to ``then``.

        Returns the encoded result or the error; None when the call had completed already (a second
        completion, such as a result arriving after the deadline answered, changes nothing).
        """
        if self.finished:
            return None
        self.finished = True
        dispatcher, call = self.dispatcher, self.call
        dispatcher.inflight -= 1
        if self.task is not None:  # the drain stops waiting for its task, which ends in this same step
            dispatcher.forget(self.task)
        outcome: bytes | PpyError
        if error is None:
            try:
                outcome = self.encode(result)
            except PpyError as exc:
                outcome = exc
            except Exception as exc:  # an encoder bug, or a result whose methods raise
                outcome = InternalError(f"the result of {call.method} could not be encoded "
                                        f"({describe(exc)}); return JSON-compatible values")
        elif isinstance(error, PpyError):
            outcome = error
        else:
            outcome = InternalError(f"{call.method} failed inside the server ({type(error).__name__}); "
                                    "see the server log")
            outcome.__cause__ = error
        try:
            dispatcher._done(call, self.dialect, self.start, outcome if isinstance(outcome, PpyError) else None)
        except Exception:  # logging or an observer failed: the reply still goes out
            log.exception("internal error while recording a call of %s", call.method)
        then = self.then
        if then is not None:
            try:
                then(call, outcome)
            except Exception:  # a bug of a front end must not stop the runner delivering other results
                log.exception("internal error while answering a call of %s", call.method)
        return outcome


class Dispatcher:
    def __init__(self, config: Config, registry: Registry, runner: Runner, version: str) -> None:
        self.registry = registry
        self.runner = runner
        self.version = version
        self.timeout = config.timeout
        self.max_inflight = config.max_inflight
        self.max_frame_bytes = config.max_frame_bytes  # [stream hook] bounds a generator's collected list
        self.debug = config.debug
        self.token = config.token
        self.access_log = config.access_log
        self.inflight = 0
        self.observers: list[Observer] = []
        self._observed: Observations = {}  # finished calls the observers have not seen yet
        self._unobserved = 0  # how many
        self._loop: asyncio.AbstractEventLoop | None = None  # where the flush is posted (see _post_flush)
        #: Starts the task of a call that needs one, named after the method called (``asyncio.current_task()
        #: .get_name()`` in user code); the server replaces it with one the drain tracks, and
        #: ``forget`` with what takes the task out again: ``CallHandle.settle`` does that, in the task's last
        #: step, which costs less than a done callback (a callback is one more loop handle per call).
        self.spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]] = _create_task
        self.forget: Callable[[asyncio.Task[Any]], object] = _ignore
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
        """Run one call in the caller's task and return its encoded result, or raise a PpyError."""
        started = self._admit(call, dialect, authed, encode, None)
        if isinstance(started, bytes):
            return started
        outcome = await self._run(started)
        if isinstance(outcome, PpyError):
            raise outcome
        return outcome

    def begin(self, call: Call, dialect: str, authed: bool, encode: Encoder, then: Then) -> bytes | None:
        """Start one call: its encoded result when it finished at once, else None and ``then`` later.

        Built-ins and refused calls finish here, with no task, so front ends answer them straight from
        ``data_received`` (docs/performance.md).  Otherwise ``then`` is called exactly once, on the
        event loop, with the encoded result or the error — from the runner's callback when it could
        start the call without a task (a sync function that was fast), else from a task.
        Raises PpyError when the call failed at once.
        """
        handle = self._admit(call, dialect, authed, encode, then)
        if isinstance(handle, bytes):
            return handle
        fn = handle.fn
        timeout = call.timeout  # _timeout(), inlined: once per call
        timeout = self.timeout if timeout is None else min(timeout, self.timeout)
        coro: Coroutine[Any, Any, object] | None
        if fn.streams:
            coro = self._run(handle)
        elif fn.is_async:
            coro = self.runner.run_settled(fn, handle.args, handle.kwargs, timeout, handle.settle) or self._run(handle)
        elif self.runner.start_sync(fn, handle.args, handle.kwargs, timeout, handle.settle):
            return None
        else:
            coro = self._run(handle)
        handle.task = self.spawn(coro, call.method)  # its settle() hands the reply to ``then``
        return None

    def _admit(self, call: Call, dialect: str, authed: bool, encode: Encoder, then: Then | None,
               ) -> bytes | CallHandle:
        """A built-in's encoded result, or the admitted call's handle (one slot taken); raises PpyError."""
        start = _perf_counter()
        try:
            method = call.method
            if method.startswith("rpc."):
                body = encode(self._builtin(call, authed))
            else:
                if not authed and self.token is not None:
                    raise Unauthorized(UNAUTHORIZED)
                registry = self.registry
                fn = registry.functions.get(method)  # Registry.lookup and Function.bind, inlined for the
                if fn is None:  # common cases: two Python calls less per call
                    raise registry.not_found(method)
                params = call.params
                args: tuple[Any, ...]
                kwargs: dict[str, Any]
                if fn.no_params and not params:
                    args, kwargs = (), {}
                else:
                    args, kwargs = fn.bind(params)
                if self.inflight >= self.max_inflight:
                    raise Overloaded(f"{self.inflight} calls in flight, the server's --max-inflight; retry later",
                                     {"max_inflight": self.max_inflight})
                # Counted now, not when a task first runs: a burst of requests decoded from one read is
                # admitted one by one, so --max-inflight holds for pipelined clients too.
                self.inflight += 1
                return CallHandle(self, call, dialect, start, encode, then, fn, args, kwargs)
        except PpyError as exc:
            self._done(call, dialect, start, exc)
            raise
        self._done(call, dialect, start, None)
        return body

    async def _run(self, handle: CallHandle) -> bytes | PpyError:
        """Await the runner and settle the handle, whatever happens (cancellation included): the task
        of a call begun with ``then`` (unless the runner's own coroutine runs it), or the rest of
        :meth:`call`."""
        try:
            fn = handle.fn
            if fn.streams:  # [stream hook] a generator, for a caller that did not ask for a stream
                result = await self._collect(handle)
            else:
                result = await self.runner.run(fn, handle.args, handle.kwargs, self._timeout(handle.call))
        except (asyncio.CancelledError, GeneratorExit):  # the drain deadline passed: still one answer
            handle.settle(None, CallTimeout(CUT_OFF))
            raise
        except BaseException as exc:
            outcome = handle.settle(None, exc)
        else:
            outcome = handle.settle(result, None)
        assert outcome is not None  # only this coroutine completes a handle it runs
        return outcome

    async def _collect(self, handle: CallHandle) -> Any:
        """[stream hook] A generator's items as one list (ppy.app.source.collect), bounded by --max-frame-bytes.
        The items arrive encoded: for the JSON encoder the list goes out as it is, no second encoding."""
        body = await collect(self.runner.stream(handle.fn, handle.args, handle.kwargs), self._timeout(handle.call),
                             self.max_frame_bytes)
        if handle.encode is jsonvalue.encode:
            handle.encode = bytes
            return body
        return jsonvalue.decode(body, 1 << 30)

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
        elapsed = _perf_counter() - start
        if self.access_log:
            access.info("%s %s %s %.3fms", dialect, call.method, code or "ok", elapsed * 1000,
                        extra={"method": call.method, "dialect": dialect, "code": code,
                               "ms": round(elapsed * 1000, 3)})
        if self.observers:
            observed, key = self._observed, (call.method, dialect, code)
            times = observed.get(key)
            if times is not None:
                times.append(elapsed)
            else:
                if not observed:
                    self._post_flush()
                observed[key] = [elapsed]
            self._unobserved += 1
            if self._unobserved >= OBSERVE_BATCH:
                self.flush_observations()

    def _post_flush(self) -> None:
        """Hand this loop turn's observations over at its end: one call per observer per turn, not per
        call (two observer calls per call were ~13% of a pipelined call's CPU, docs/performance.md)."""
        loop = self._loop
        if loop is None or not loop.is_running():  # get_running_loop() costs a getpid() on 3.11: not per turn
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:  # called with no event loop (a synchronous embedding): now, then
                self.flush_observations()
                return
        loop.call_soon(self.flush_observations)

    def flush_observations(self) -> None:
        """Hand the calls finished so far to the observers.  Whatever reads what they build (a scrape,
        the console's statistics) calls this first, so it sees every call that has been answered."""
        observed = self._observed
        if not observed:
            return
        self._observed, self._unobserved = {}, 0
        for observer in self.observers:
            try:
                observer(observed)
            except Exception:  # metrics must never stop the server answering calls
                log.exception("internal error in a call observer")

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


def _create_task(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro, name=name)


def _ignore(task: asyncio.Task[Any]) -> None:
    """``forget`` when nothing tracks call tasks (the dispatcher used without ppy's server)."""
