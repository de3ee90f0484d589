"""Lines dialect streams: a generator's items as ``rpc.item`` lines, pulled as the client reads.

A request with ``"stream": true`` for a generator function becomes one task
that pulls items and queues them as ``rpc.item`` notifications, then the
call's one response.  It holds one ``--max-inflight`` slot and counts one call
against the connection's window for its whole life.  It pulls only while the
connection is ``writable`` (its waiting replies are under the connection's
output high-water mark) and waits for :meth:`LineStreams.resumed` otherwise: a
client that stops reading pauses the generator, and the server's memory for
the stream stays at that mark plus one pull.

``rpc.cancel`` (``{"id": ID}``) cancels the task: no item is queued after it,
the response is -32005 and the generator is closed.  While the output is
blocked the connection handles no request, ``rpc.cancel`` included: the
cancel takes effect once the client has read the replies waiting for it
(ppy's clients read and drop them after sending the cancel).  A closed
connection cancels every stream on it the same way, with nothing written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ppy.app.runner import CUT_OFF
from ppy.app.streaming import StreamCall, cancelled, open_stream, pump
from ppy.errors import CallTimeout, InvalidRequest, PpyError
from ppy.server.tcp.dialect import Link
from ppy.wire import jsonrpc
from ppy.wire.model import Call, Dialect
from ppy.wire.stream import item_lines

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


class LineStreams:
    """The streams of one lines connection, by request id."""

    def __init__(self, conn: Link) -> None:
        self.conn = conn
        self.running: dict[Any, _Running] = {}
        self._writable: asyncio.Future[None] | None = None  # resolved by resumed() / the connection's loss
        self._watching = False

    def handle(self, item: Call) -> bool:
        """Handle ``rpc.cancel`` or a ``"stream": true`` call of a generator; False leaves the request
        to the ordinary path (a function that is not a generator: ``"stream"`` is then ignored)."""
        conn = self.conn
        if item.method == "rpc.cancel":
            self._cancel(item)
            return True
        if item.notify:
            return False  # nobody to send items to: the ordinary path runs it and drops the result
        try:
            if item.id in self.running:
                raise InvalidRequest(f"a stream with id {item.id!r} is already running on this connection; "
                                     "give each request its own id")
            stream = open_stream(conn.state.dispatcher, item, Dialect.LINES, conn.authed)
        except PpyError as exc:
            conn.send_line(jsonrpc.encode_error(item.id, exc))
            return True
        if stream is None:
            return False
        if not self._watching:
            self._watching = True
            conn.lost.add_done_callback(self._lost)
        running = _Running(stream)
        self.running[item.id] = running
        conn.calls += 1
        running.task = conn.state.spawn(self._run(running))
        return True

    def resumed(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _lost(self, _: object) -> None:
        self.resumed()
        for running in list(self.running.values()):
            running.stop(GONE)

    async def until_writable(self) -> None:
        conn = self.conn
        while not conn.writable:
            if conn.lost.done():
                raise ConnectionResetError("connection closed")
            if self._writable is None or self._writable.done():
                self._writable = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._writable)  # shared by every stream of the connection
        if conn.lost.done():
            raise ConnectionResetError("connection closed")

    def _cancel(self, item: Call) -> None:
        params = item.params
        rid = params.get("id") if isinstance(params, dict) else (params[0] if len(params) == 1 else None)
        running = self.running.get(rid)
        if running is not None:
            running.stop(CANCELLED)
        if not item.notify:  # a request rather than the notification: say whether it stopped a stream
            self.conn.send_line(jsonrpc.encode_result(item.id, b"true" if running is not None else b"false"))

    async def _run(self, running: _Running) -> None:
        stream = running.stream
        rid = stream.call.id
        conn = self.conn

        async def emit(items: list[bytes], seq: int) -> None:
            if running.reason:  # stopped while the pull finished: nothing more goes out
                raise asyncio.CancelledError
            conn.send(item_lines(rid, seq, items))

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
            self.running.pop(rid, None)
            stream.finish(error)  # first: it adds the request_id of a logged failure to the error
            if running.reason == GONE:
                conn.finished(1, None)
            else:
                line = reply if error is None else jsonrpc.encode_error(rid, error)
                conn.finished(1, (line or b"") + b"\n")
