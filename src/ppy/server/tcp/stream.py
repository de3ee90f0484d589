"""Lines dialect streams: a generator's items as ``rpc.item`` lines, pulled as the client reads.

A request with ``"stream": true`` for a generator function becomes one task
that pulls items and writes them as ``rpc.item`` notifications, then the
call's one response.  It pulls only while :meth:`StreamCalls.may_write` says
the connection may take more output (its waiting replies are under
``OUTPUT_HIGH_WATER``), and waits for ``resume_writing`` otherwise: a client
that stops reading pauses the generator, and the server's memory for the
stream stays at that limit plus one pull.

``rpc.cancel`` (``{"id": ID}``) cancels the task: no item is written after it,
the response is -32005 and the generator is closed.  A closed connection
cancels every stream on it the same way, with nothing written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ppy.app.streaming import StreamCall, cancelled, open_stream, pump
from ppy.errors import CallTimeout, InvalidRequest, PpyError
from ppy.server.tcp.base import CUT_OFF, ConnectionBase
from ppy.wire import jsonrpc
from ppy.wire.model import Call
from ppy.wire.stream import item_lines

#: Replies waiting to be sent on one connection above which a stream produces no more items.
OUTPUT_HIGH_WATER = 1024 * 1024

CANCELLED, GONE = "cancelled", "gone"


class _Running:
    __slots__ = ("reason", "stream", "task")

    def __init__(self, stream: StreamCall) -> None:
        self.stream = stream
        self.reason = ""  # why it stops early: CANCELLED (rpc.cancel) or GONE (connection closed)
        self.task: asyncio.Task[Any] | None = None

    def stop(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
            if self.task is not None:
                self.task.cancel()


class StreamCalls(ConnectionBase):
    _streams: dict[Any, _Running] | None = None  # by request id, created with the first stream
    _writable: asyncio.Future[None] | None = None  # resolved by resume_writing / connection_lost

    # -- flow control (core's per-connection flow control may supply this predicate later) ----------

    def may_write(self) -> bool:
        """Whether the connection may take more output now."""
        transport = self.transport
        return (transport is not None and not self.closed
                and transport.get_write_buffer_size() < OUTPUT_HIGH_WATER)

    async def until_writable(self) -> None:
        while not self.may_write():
            if self.closed or self.transport is None or self.transport.is_closing():
                raise ConnectionResetError("connection closed")
            if self._writable is None or self._writable.done():
                self._writable = self.loop.create_future()
            await asyncio.shield(self._writable)  # shared by every stream of the connection

    def _wake_writers(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._wake_writers()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake_writers()
        for running in list((self._streams or {}).values()):
            running.stop(GONE)

    # -- requests ---------------------------------------------------------------------------

    def _on_stream_line(self, item: Call, out: list[bytes]) -> bool:
        """[stream hook, called by the lines dialect] Handle ``rpc.cancel`` or a ``"stream": true``
        call of a generator; False leaves the request to the ordinary path."""
        if item.method == "rpc.cancel":
            self._cancel(item, out)
            return True
        if item.notify:
            return False  # nobody to send items to: the ordinary path runs it and drops the result
        streams = self._streams
        if streams is None:
            streams = self._streams = {}
        try:
            if item.id in streams:
                raise InvalidRequest(f"a stream with id {item.id!r} is already running on this connection; "
                                     "give each request its own id")
            stream = open_stream(self.dispatcher, item, "lines", self.authed)
        except PpyError as exc:
            out.append(jsonrpc.encode_error(item.id, exc))
            return True
        if stream is None:
            return False  # not a generator: "stream": true is ignored
        running = _Running(stream)
        streams[item.id] = running
        self.inflight += 1
        self.queued += 1
        running.task = self.state.spawn(self._run_stream(running))
        return True

    def _cancel(self, item: Call, out: list[bytes]) -> None:
        params = item.params
        rid = params.get("id") if isinstance(params, dict) else (params[0] if len(params) == 1 else None)
        running = (self._streams or {}).get(rid)
        if running is not None:
            running.stop(CANCELLED)
        if not item.notify:  # a request rather than the notification: say whether it stopped a stream
            out.append(jsonrpc.encode_result(item.id, b"true" if running is not None else b"false"))

    async def _run_stream(self, running: _Running) -> None:
        stream = running.stream
        rid = stream.call.id

        async def emit(items: list[bytes], seq: int) -> None:
            if running.reason:  # stopped while the pull finished: nothing more goes out
                raise asyncio.CancelledError
            self._write(item_lines(rid, seq, items))

        error: PpyError | None = None
        reply: bytes | None = None
        try:
            try:
                result = await pump(stream, self.until_writable, emit)
            except PpyError as exc:
                error = exc
            else:
                reply = jsonrpc.encode_result(rid, result)
        except (asyncio.CancelledError, ConnectionError) as exc:
            if running.reason == GONE or isinstance(exc, ConnectionError):
                error = cancelled(stream.method)  # the client went away: nothing to send
                running.reason = GONE
            elif running.reason == CANCELLED:
                error = cancelled(stream.method)
            else:  # the drain deadline passed: still one answer per request
                error = CallTimeout(CUT_OFF)
                raise
        finally:
            if self._streams is not None:
                self._streams.pop(rid, None)
            stream.finish(error)  # first: it adds the request_id of a logged failure to the error
            if running.reason != GONE:
                self._write_line(reply if error is None else jsonrpc.encode_error(rid, error))  # type: ignore[arg-type]
            self._call_done(1)

    def _call_done(self, weight: int) -> None:  # provided by the lines dialect
        raise NotImplementedError
