"""Lines dialect (one JSON-RPC 2.0 request or batch per line): calls, batches, replies, backlog."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, cast

from ppy.app.dispatch import PENDING
from ppy.errors import CallTimeout, Overloaded, PpyError
from ppy.server.tcp.base import CUT_OFF
from ppy.server.tcp.stream import StreamCalls
from ppy.wire import jsonrpc, jsonvalue
from ppy.wire.model import Call

SHUTTING_DOWN = ("server is shutting down and takes no new requests; "
                 "retry on a new connection (to this server once restarted, or another one)")
#: Call items (a batch counts each member) one connection may have running before the server stops
#: reading it until half are answered.  Without it a client pipelining cheap batches and never
#: reading replies grows the server by ~1 KiB per request it sends (measured: 300 MB in 8 s).
MAX_QUEUED_PER_CONNECTION = 1024


class LinesCalls(StreamCalls):  # [stream hook] StreamCalls(ConnectionBase): streams and rpc.cancel
    def _on_line(self, line: bytes, out: list[bytes]) -> None:
        """Handle one request line; a reply that is ready at once goes to ``out``, else a task writes it."""
        items, batch = jsonrpc.parse(line, max_depth=self.config.max_depth, max_batch=self.config.max_batch)
        if self.state.draining:
            self._refuse_while_draining(items, batch)
            return
        if batch:
            self.inflight += 1
            self.queued += len(items)
            self.state.spawn(self._run_batch(items))
            return
        item = items[0]
        if isinstance(item, jsonrpc.Rejected):
            out.append(jsonrpc.encode_error(item.id, item.error))
            return
        if (item.stream or item.method == "rpc.cancel") and self._on_stream_line(item, out):  # [stream hook]
            return
        try:
            started = self.dispatcher.begin(item, "lines", self.authed, jsonvalue.encode, self._settled)
        except PpyError as exc:
            if not item.notify:
                out.append(jsonrpc.encode_error(item.id, exc))
            return
        if started is PENDING:  # the runner calls _settled when it is done: no task
            self.inflight += 1
            self.queued += 1
            return
        if isinstance(started, bytes):
            if item.method == "rpc.auth":
                self.authed = True
            if not item.notify:
                out.append(jsonrpc.encode_result(item.id, started))
            return
        self.inflight += 1
        self.queued += 1
        self.state.spawn(self._run_one(item, cast(Coroutine[Any, Any, bytes], started)))

    def _settled(self, item: Call, outcome: bytes | PpyError) -> None:
        """A call begun with PENDING has ended (on the loop, from the lane's delivery)."""
        if not item.notify:
            if isinstance(outcome, PpyError):
                self._send_soon(jsonrpc.encode_error(item.id, outcome))
            else:
                self._send_soon(jsonrpc.encode_result(item.id, outcome))
        self._call_done(1)

    async def _reply(self, item: jsonrpc.Item) -> bytes | None:
        if isinstance(item, jsonrpc.Rejected):
            return jsonrpc.encode_error(item.id, item.error)
        try:
            result = await self.dispatcher.call(item, "lines", self.authed, jsonvalue.encode)
        except PpyError as exc:
            return None if item.notify else jsonrpc.encode_error(item.id, exc)
        if item.method == "rpc.auth":
            self.authed = True
        return None if item.notify else jsonrpc.encode_result(item.id, result)

    async def _run_one(self, item: Call, started: Coroutine[Any, Any, bytes]) -> None:
        try:
            try:
                result = await started
            except PpyError as exc:
                reply = None if item.notify else jsonrpc.encode_error(item.id, exc)
            else:
                reply = None if item.notify else jsonrpc.encode_result(item.id, result)
            if reply is not None:
                self._send_soon(reply)
        except asyncio.CancelledError:  # the drain deadline passed: still one answer per request
            self._write_errors([item], False, CallTimeout(CUT_OFF))
            raise
        finally:
            self._call_done(1)

    async def _run_batch(self, items: list[jsonrpc.Item]) -> None:
        try:
            replies = await asyncio.gather(*(self._reply(item) for item in items))
            body = [r for r in replies if r is not None]
            if body:
                self._send_soon(jsonrpc.encode_batch(body))
        except asyncio.CancelledError:
            self._write_errors(items, True, CallTimeout(CUT_OFF))
            raise
        finally:
            self._call_done(len(items))

    def _refuse_while_draining(self, items: list[jsonrpc.Item], batch: bool) -> None:
        """Requests that arrive after SIGTERM are answered -32002 at once, so the drain can end."""
        self._write_errors(items, batch, Overloaded(SHUTTING_DOWN))
        self._maybe_close()

    def _write_errors(self, items: list[jsonrpc.Item], batch: bool, error: PpyError) -> None:
        body = [jsonrpc.encode_error(item.id, item.error if isinstance(item, jsonrpc.Rejected) else error)
                for item in items if isinstance(item, jsonrpc.Rejected) or not item.notify]
        if body:
            self._write_line(jsonrpc.encode_batch(body) if batch else body[0])

    def _call_done(self, weight: int) -> None:
        self.inflight -= 1
        self.queued -= weight
        if self._backlogged and self.queued <= MAX_QUEUED_PER_CONNECTION // 2:
            self._backlogged = False
            self._resume_reading()
        self._maybe_close()
