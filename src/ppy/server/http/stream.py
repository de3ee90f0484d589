"""``GET|POST /stream/{entry}/{func}``: a generator's items as Server-Sent Events.

Arguments as for ``/call`` (query string or JSON body).  The reply is
``text/event-stream``: one ``event: item`` per item (``data:`` its JSON),
then ``event: end`` (``data: {"result": ...}``) or ``event: error``
(``data: {"error": {...}}``, the ``/call`` error shape) — usable from a
browser's ``EventSource`` and from ``curl -N``.  A function that is not a
generator gets its ordinary result as the ``end`` event.

Refusals that happen before the call (token, draining, a body too large)
keep their HTTP status and JSON body; once the call starts the status is 200
and a failure is the ``error`` event.  Flow control is the HTTP server's own:
sending an event waits while the client is not reading, so the next item is
not produced.  A client that disconnects stops the stream: the generator is
closed and nothing more is sent.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Message, Receive, Scope, Send

from ppy.app.runner import CUT_OFF
from ppy.app.streaming import StreamCall, cancelled, open_stream, pump
from ppy.errors import CallTimeout, PpyError
from ppy.server.http.calls import HttpCalls
from ppy.server.http.edge import error_body, tracked
from ppy.wire import jsonvalue
from ppy.wire.model import Call
from ppy.wire.stream import sse_end, sse_error, sse_items

HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
           (b"x-accel-buffering", b"no")]  # nginx: pass each event on at once


class HttpStreams:
    """The ``/stream`` route as a raw ASGI app; parameters are read as :class:`HttpCalls` reads them."""

    def __init__(self, calls: HttpCalls) -> None:
        self.calls = calls
        self.state = calls.state
        self.dispatcher = calls.dispatcher

    async def stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        admitted = await self.calls.admit(scope, receive, send, "/stream")  # the rules of /call
        if admitted is None:
            return
        method, params, send = admitted
        call = Call(method, params, stream=True)
        with tracked(self.state):
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            try:
                stream = open_stream(self.dispatcher, call, "http", True)
            except PpyError as exc:
                await _last(send, sse_error(error_body(exc)))
                return
            if stream is None:  # not a generator: its ordinary result is the end event
                try:
                    result = await self.dispatcher.call(call, "http", True, jsonvalue.encode)
                except PpyError as exc:
                    await _last(send, sse_error(error_body(exc)))
                else:
                    await _last(send, sse_end(result))
                return
            await self._pump(stream, receive, send)

    async def _pump(self, stream: StreamCall, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch(receive, task, gone))

        async def ready() -> None:
            return None  # send() itself waits while the client is not reading

        async def emit(items: list[bytes], seq: int) -> None:
            if gone.is_set():
                raise asyncio.CancelledError
            await send({"type": "http.response.body", "body": sse_items(items), "more_body": True})

        error: PpyError | None = None
        last = b""
        try:
            try:
                last = sse_end(await pump(stream, ready, emit))
            except PpyError as exc:
                error = exc
        except asyncio.CancelledError:
            if not gone.is_set():  # the drain deadline: still one answer
                error = CallTimeout(CUT_OFF)
                stream.finish(error)
                await _last(send, sse_error(error_body(error)))
                raise
            task.uncancel()
            error = cancelled(stream.method)
        finally:
            watcher.cancel()
            stream.finish(error)  # first: it adds the request_id of a logged failure to the error
        if not gone.is_set():
            await _last(send, last if error is None else sse_error(error_body(error)))


async def _watch(receive: Receive, task: asyncio.Task[None], gone: asyncio.Event) -> None:
    """Cancel the streaming task when the client disconnects (a closed EventSource, a stopped curl)."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                task.cancel()
                return


async def _last(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": False})
