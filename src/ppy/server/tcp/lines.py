"""Lines dialect (one JSON-RPC 2.0 request or batch per line): calls, batches and their replies."""

from __future__ import annotations

import asyncio

from ppy.app.runner import CUT_OFF
from ppy.errors import CallTimeout, Overloaded, PpyError, Unauthorized
from ppy.server.tcp.dialect import Link
from ppy.server.tcp.stream import LineStreams
from ppy.wire import jsonrpc, jsonvalue
from ppy.wire.lines import LineDecoder
from ppy.wire.model import Call, Dialect

SHUTTING_DOWN = ("server is shutting down and takes no new requests; "
                 "retry on a new connection (to this server once restarted, or another one)")
DIALECT = Dialect.LINES
#: The notification a draining process sends on every lines connection when it hands over.
GOAWAY = b'{"jsonrpc":"2.0","method":"rpc.goaway"}'
_ENCODE = jsonvalue.encode
_RESULT_LINE = jsonrpc.encode_result_line
_parse_line = jsonrpc.parse_line


class LinesHandler:
    def __init__(self, conn: Link) -> None:
        self.conn = conn
        self.state = conn.state
        self.dispatcher = conn.state.dispatcher
        config = conn.state.config
        self.max_depth, self.max_batch = config.max_depth, config.max_batch
        self.decoder = LineDecoder(config.max_frame_bytes)
        self._told_goaway = False
        self.streams = LineStreams(conn)  # [stream hook] "stream": true calls and rpc.cancel
        self._then = self._settled  # one bound method for all calls, not one per call

    def error_frame(self, error: PpyError) -> bytes:
        return jsonrpc.encode_error(None, error) + b"\n"

    def resumed(self) -> None:
        """[stream hook] The connection's output went below its low-water mark: paused streams go on."""
        self.streams.resumed()

    def goaway(self) -> None:
        """Once: the client moves its next calls to a new connection; requests that still reach this one
        are answered normally until the grace period ends."""
        if not self._told_goaway:
            self._told_goaway = True
            self.conn.send_line(GOAWAY)

    def handle(self, line: bytes) -> bool:
        """Handle one request line: a reply that is ready at once is queued now, else when its call ends."""
        call = _parse_line(line, self.max_depth, self.max_batch)
        if isinstance(call, tuple):
            return self._handle_items(*call)
        if self.state.draining:
            return self._handle_items([call], False)
        if (call.stream or call.method == "rpc.cancel") and self.streams.handle(call):  # [stream hook]
            return True
        conn = self.conn
        try:
            started = self.dispatcher.begin(call, DIALECT, conn.authed, _ENCODE, self._then)
        except PpyError as exc:
            if isinstance(exc, Unauthorized) and call.method == "rpc.auth":
                conn.wrong_token()
            if not call.notify:
                conn.send_line(jsonrpc.encode_error(call.id, exc))
            return True
        if started is None:  # running: _settled is called when it ends
            conn.calls += 1
            return True
        if call.method == "rpc.auth":
            conn.authed = True
        if not call.notify:
            conn.send(_RESULT_LINE(call.id, started))
        return True

    def _handle_items(self, items: list[jsonrpc.Item], batch: bool) -> bool:
        """A batch, a request answered with an error at once, or any request while the server drains."""
        conn = self.conn
        if self.state.draining:
            self._send_errors(items, batch, Overloaded(SHUTTING_DOWN))
            return True
        if batch:
            if conn.calls and conn.calls + len(items) > conn.window:
                return False  # a batch counts as its calls: wait until they fit the window
            conn.calls += len(items)
            self.state.spawn(self._run_batch(items))
            return True
        item = items[0]
        assert isinstance(item, jsonrpc.Rejected)  # a single request that parsed is handled by handle()
        conn.send_line(jsonrpc.encode_error(item.id, item.error))
        return True

    def _settled(self, item: Call, outcome: bytes | PpyError) -> None:
        """A call that did not finish at once has ended (on the loop: a runner callback or its task)."""
        if item.notify:
            self.conn.finished(1, None)
        elif type(outcome) is bytes:
            self.conn.finished(1, _RESULT_LINE(item.id, outcome))
        else:
            assert isinstance(outcome, PpyError)
            self.conn.finished(1, jsonrpc.encode_error(item.id, outcome) + b"\n")

    async def _reply(self, item: jsonrpc.Item) -> bytes | None:
        if isinstance(item, jsonrpc.Rejected):
            return jsonrpc.encode_error(item.id, item.error)
        try:
            result = await self.dispatcher.call(item, DIALECT, self.conn.authed, jsonvalue.encode)
        except PpyError as exc:
            if isinstance(exc, Unauthorized) and item.method == "rpc.auth":
                self.conn.wrong_token()
            return None if item.notify else jsonrpc.encode_error(item.id, exc)
        if item.method == "rpc.auth":
            self.conn.authed = True
        return None if item.notify else jsonrpc.encode_result(item.id, result)

    async def _run_batch(self, items: list[jsonrpc.Item]) -> None:
        reply = None
        try:
            replies = await asyncio.gather(*(self._reply(item) for item in items))
            body = [r for r in replies if r is not None]
            if body:
                reply = jsonrpc.encode_batch(body) + b"\n"
        except asyncio.CancelledError:  # the drain deadline passed: still one answer per request
            reply = self._errors(items, True, CallTimeout(CUT_OFF))
            raise
        finally:
            self.conn.finished(len(items), reply)

    def _send_errors(self, items: list[jsonrpc.Item], batch: bool, error: PpyError) -> None:
        """Requests that arrive after SIGTERM are answered -32002 at once, so the drain can end."""
        reply = self._errors(items, batch, error)
        if reply is not None:
            self.conn.send(reply)

    @staticmethod
    def _errors(items: list[jsonrpc.Item], batch: bool, error: PpyError) -> bytes | None:
        body = [jsonrpc.encode_error(item.id, item.error if isinstance(item, jsonrpc.Rejected) else error)
                for item in items if isinstance(item, jsonrpc.Rejected) or not item.notify]
        if not body:
            return None
        return (jsonrpc.encode_batch(body) if batch else body[0]) + b"\n"
