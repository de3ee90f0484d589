"""Streaming calls: a generator function's items, the same rules for every front end.

A function that is a generator (or async generator) *streams*.  A caller that
asks for a stream (lines ``"stream": true``, ``/stream/...``) gets a
:class:`StreamCall` from :func:`open_stream` and drives it with :func:`pump`,
which pulls items only when the front end can take more (its ``ready``
coroutine returns), so a slow reader pauses the generator.  Every other
caller gets the items collected into a list by :func:`collect`, bounded by
``--max-frame-bytes``.

The rules of a call hold for the whole stream: one in-flight slot from start
to end (released exactly once, :meth:`StreamCall.finish`), one deadline
(``--timeout`` or the client's shorter ``timeout``), and the generator is
closed — its ``finally`` blocks run — whenever the stream stops early
(deadline, ``rpc.cancel``, a closed connection).
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import time
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ppy.app.function import Function
from ppy.errors import CallTimeout, Cancelled, InternalError, Overloaded, PpyError, Unauthorized
from ppy.wire import jsonvalue
from ppy.wire.model import Call

if TYPE_CHECKING:
    from ppy.app.dispatch import Dispatcher, Encoder

@dataclass(slots=True)
class Pulled:
    """What one pull gave: encoded items, and when the generator is done, its encoded return value."""

    items: list[bytes] = field(default_factory=list)
    done: bool = False
    result: bytes = b"null"


class Source(Protocol):
    """A running stream as the front ends see it (in-process or in an ``--isolate`` worker)."""

    method: str

    async def pull(self) -> Pulled:
        """The next items (at least one, or ``done``); raises PpyError when the generator failed."""
        ...

    def close(self) -> None:
        """Stop the generator (idempotent, never blocks); its ``finally`` runs as soon as it can."""
        ...


#: Stream outcomes, as the metrics label them.
COMPLETED, CANCELLED, TIMED_OUT, FAILED = "completed", "cancelled", "timed_out", "failed"


#: Annotations whose first argument is the type of the items a generator function yields.
ITERATOR_ORIGINS = (collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator,
                    collections.abc.AsyncIterator, collections.abc.AsyncIterable, collections.abc.AsyncGenerator)


def item_type(annotation: Any) -> Any:
    """``T`` of ``Iterator[T]``, ``AsyncIterator[T]``, ``Generator[T, ...]`` (and the Iterable and
    AsyncGenerator forms); ``inspect.Parameter.empty`` (unknown) for anything else."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in ITERATOR_ORIGINS and args:
        return args[0]
    return inspect.Parameter.empty


def past_deadline(method: str, timeout: float) -> CallTimeout:
    return CallTimeout(f"{method} streamed past its {timeout:g} s deadline and was stopped; the whole stream "
                       "is one call: make it shorter, or raise --timeout", {"timeout": timeout})


def cancelled(method: str) -> Cancelled:
    return Cancelled(f"{method} was cancelled by the client (rpc.cancel); no more items were sent")


class StreamCall:
    """One admitted streaming call: its source, deadline and the slot it holds until :meth:`finish`."""

    __slots__ = ("call", "dialect", "dispatcher", "finished", "items", "method", "source", "start", "timeout")

    def __init__(self, dispatcher: Dispatcher, call: Call, dialect: str, source: Source, timeout: float,
                 start: float) -> None:
        self.dispatcher, self.call, self.dialect, self.source = dispatcher, call, dialect, source
        self.method = call.method
        self.timeout = timeout
        self.start = start
        self.items = 0
        self.finished = False

    def finish(self, error: PpyError | None) -> None:
        """Release the slot, log and observe the outcome; only the first call counts."""
        if self.finished:
            return
        self.finished = True
        dispatcher = self.dispatcher
        dispatcher.inflight -= 1
        dispatcher._done(self.call, self.dialect, self.start, error)
        outcome = (COMPLETED if error is None else CANCELLED if isinstance(error, Cancelled)
                   else TIMED_OUT if isinstance(error, CallTimeout) else FAILED)
        elapsed = time.perf_counter() - self.start
        for observer in dispatcher.stream_observers:
            observer(self.method, outcome, self.items, elapsed)


def open_stream(dispatcher: Dispatcher, call: Call, dialect: str, authed: bool) -> StreamCall | None:
    """Admit a streaming call, or None when ``call`` is not one of a generator function (the ordinary
    path answers it, errors included).  Raises PpyError (unauthorized, invalid params, overloaded)."""
    from ppy.app.dispatch import UNAUTHORIZED

    method = call.method
    if method.startswith("rpc."):
        return None
    fn = dispatcher.registry.functions.get(method)
    if fn is None or not fn.streams:
        return None
    start = time.perf_counter()
    try:
        if not authed and dispatcher.token is not None:
            raise Unauthorized(UNAUTHORIZED)
        args, kwargs = fn.bind(call.params)
        if dispatcher.inflight >= dispatcher.max_inflight:
            raise Overloaded(f"{dispatcher.inflight} calls in flight, the server's --max-inflight; retry later",
                             {"max_inflight": dispatcher.max_inflight})
        source = dispatcher.runner.stream(fn, args, kwargs)
    except PpyError as exc:
        dispatcher._done(call, dialect, start, exc)
        raise
    dispatcher.inflight += 1
    return StreamCall(dispatcher, call, dialect, source, dispatcher._timeout(call), start)


async def pump(stream: StreamCall, ready: Callable[[], Awaitable[None]],
               emit: Callable[[list[bytes], int], Awaitable[None]]) -> bytes:
    """Pull items and ``emit(items, first_seq)`` them, awaiting ``ready()`` before each pull; return the
    encoded return value.  Raises PpyError (CallTimeout past the deadline) or CancelledError; the
    generator is closed whenever it did not finish."""
    source = stream.source
    done = False
    try:
        async with asyncio.timeout(stream.timeout):
            while True:
                await ready()
                pulled = await source.pull()
                if pulled.items:
                    seq = stream.items
                    stream.items += len(pulled.items)
                    await emit(pulled.items, seq)
                if pulled.done:
                    done = True
                    return pulled.result
    except TimeoutError:
        raise past_deadline(stream.method, stream.timeout) from None
    finally:
        if not done:
            source.close()


async def collect(dispatcher: Dispatcher, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any],
                  timeout: float, encode: Encoder) -> bytes:
    """The items of a generator as one encoded list, for callers that did not ask for a stream.

    The list may not grow past ``--max-frame-bytes``: past it the generator is closed and the call
    fails with -32603 naming the limit.  Its return value is dropped (a list is the result).
    """
    limit = dispatcher.max_frame_bytes
    source = dispatcher.runner.stream(fn, args, kwargs)
    items: list[bytes] = []
    size = 2
    done = False
    try:
        async with asyncio.timeout(timeout):
            while not done:
                pulled = await source.pull()
                items += pulled.items
                size += sum(len(item) + 1 for item in pulled.items)
                if size > limit:
                    raise InternalError(
                        f"{fn.method} is a generator and its items, collected into a list, grew past "
                        f"--max-frame-bytes ({limit} bytes); ask for a stream instead (lines: \"stream\": true, "
                        "HTTP: /stream/..., clients: stream()) or raise the limit",
                        {"max_frame_bytes": limit})
                done = pulled.done
    except TimeoutError:
        raise past_deadline(fn.method, timeout) from None
    finally:
        if not done:
            source.close()
    body = b"[" + b",".join(items) + b"]"
    return body if encode is jsonvalue.encode else encode(msgspec.json.decode(body))
