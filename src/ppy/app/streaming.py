"""Streaming calls: a generator function's items, the same rules for every front end.

A caller that asks for a stream (lines ``"stream": true``, ``/stream/...``)
gets a :class:`StreamCall` from :func:`open_stream` and drives it with
:func:`pump`, which pulls items only when the front end can take more (its
``ready`` coroutine returns), so a slow reader pauses the generator.  Every
other caller gets the items collected into a list (the dispatcher, with
:func:`ppy.app.source.collect`), bounded by ``--max-frame-bytes``.

The rules of a call hold for the whole stream: one in-flight slot from start
to end, taken and given back by the call's :class:`CallHandle` (released
exactly once, :meth:`StreamCall.finish`), one deadline (``--timeout`` or the
client's shorter ``timeout``), and the generator is closed — its ``finally``
blocks run — whenever the stream stops early (deadline, ``rpc.cancel``, a
closed connection).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ppy.app.dispatch import CallHandle, Dispatcher
from ppy.app.source import Source, past_deadline
from ppy.errors import CallTimeout, Cancelled, PpyError
from ppy.wire.model import Call

#: Stream outcomes, as the metrics label them.
COMPLETED, CANCELLED, TIMED_OUT, FAILED = "completed", "cancelled", "timed_out", "failed"


def cancelled(method: str) -> Cancelled:
    return Cancelled(f"{method} was cancelled by the client (rpc.cancel); no more items were sent")


class StreamCall:
    """One admitted streaming call: its source, deadline and the handle that holds its slot."""

    __slots__ = ("call", "dispatcher", "handle", "items", "method", "source", "timeout")

    def __init__(self, dispatcher: Dispatcher, handle: CallHandle, source: Source, timeout: float) -> None:
        self.dispatcher, self.handle, self.source = dispatcher, handle, source
        self.call = handle.call
        self.method = handle.call.method
        self.timeout = timeout
        self.items = 0

    def finish(self, error: PpyError | None) -> None:
        """Settle the call (slot, log, call metrics) and observe the stream; only the first call counts."""
        if self.handle.settle(b"null", error) is None:
            return
        outcome = (COMPLETED if error is None else CANCELLED if isinstance(error, Cancelled)
                   else TIMED_OUT if isinstance(error, CallTimeout) else FAILED)
        elapsed = time.perf_counter() - self.handle.start
        for observer in self.dispatcher.stream_observers:
            observer(self.method, outcome, self.items, elapsed)


def _as_is(value: bytes) -> bytes:
    return value


def open_stream(dispatcher: Dispatcher, call: Call, dialect: str, authed: bool) -> StreamCall | None:
    """Admit a streaming call, or None when ``call`` is not one of a generator function (the ordinary
    path answers it, errors included).  Raises PpyError (unauthorized, invalid params, overloaded)."""
    if call.method.startswith("rpc."):
        return None
    fn = dispatcher.registry.functions.get(call.method)
    if fn is None or not fn.streams:
        return None
    handle = dispatcher._admit(call, dialect, authed, _as_is, None)  # the same checks as every call
    assert not isinstance(handle, bytes)  # not a built-in
    try:
        source = dispatcher.runner.stream(handle.fn, handle.args, handle.kwargs)
    except BaseException as exc:
        error = handle.settle(None, exc)
        if isinstance(error, PpyError):
            raise error from exc
        raise
    return StreamCall(dispatcher, handle, source, dispatcher._timeout(call))


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
