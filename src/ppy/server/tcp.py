"""One asyncio protocol per TCP or Unix connection; the dialect is told from the first bytes.

Connections are cheap (no thread each); only calls consume the bounded
runner.  Every wait is bounded: ``--idle-timeout`` between requests, and
``--request-timeout`` from a request's first byte to its last, which a
client trickling one byte a second cannot reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, cast

from ppy.errors import CallTimeout, InvalidRequest, Overloaded, ParseError, PpyError, ProtocolError
from ppy.server import legacy
from ppy.server.state import ServerState
from ppy.wire import jsonrpc, jsonvalue
from ppy.wire.legacy import LegacyDecoder, encode_frame
from ppy.wire.lines import LineDecoder
from ppy.wire.model import Call
from ppy.wire.sniff import Verdict, sniff

log = logging.getLogger("ppy.server")

#: Whitespace a client may send before its first request; past this it is not a client of ours.
MAX_SNIFF_BYTES = 1024
NOT_A_REQUEST = ParseError(
    "not a request: send a JSON-RPC 2.0 object per line, or a legacy 11-byte header frame")
SHUTTING_DOWN = ("server is shutting down and takes no new requests; "
                 "retry on a new connection (to this server once restarted, or another one)")
#: Call items (a batch counts each member) one connection may have running before the server stops
#: reading it until half are answered.  Without it a client pipelining cheap batches and never
#: reading replies grows the server by ~1 KiB per request it sends (measured: 300 MB in 8 s).
MAX_QUEUED_PER_CONNECTION = 1024
CUT_OFF = ("server is shutting down and this call did not finish within the drain deadline "
           "(--timeout); it may have run partly: check before retrying")


class Connection(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.config = state.config
        self.dispatcher = state.dispatcher
        self.transport: asyncio.Transport | None = None
        self.dialect: str | None = None
        self.decoder: LegacyDecoder | LineDecoder | None = None
        self.prefix = b""
        self.authed = state.dispatcher.token is None
        self.inflight = 0
        self._soon: list[bytes] = []  # reply lines queued by tasks, written at the end of this loop turn
        self.queued = 0  # call items in running tasks, weighted by batch size
        self._backlogged = False  # reading paused until queued calls are answered
        self._write_paused = False  # reading paused until the client reads its replies
        self.over_limit = False
        self.closed = False
        self.done_reading = False
        self._idle: asyncio.TimerHandle | None = None
        self._idle_from = 0.0  # loop time of the last activity (see _arm_idle)
        self._deadline: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = self.loop.create_future()  # the drain awaits the last byte written

    # -- lifecycle -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        state = self.state
        if state.open_connections >= self.config.max_connections or state.draining:
            # Answer in the client's own dialect once we know it, then close.
            self.over_limit = True
            state.refused += 1
            self._deadline = self.loop.call_later(1.0, self._abort)
            return
        state.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timers()
        if not self.lost.done():
            self.lost.set_result(None)
        if self in self.state.connections:
            self.state.connections.discard(self)
            if self.dialect:
                self.state.by_dialect[self.dialect] -= 1

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop reading its requests.
        self._write_paused = True
        if self.transport and not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume_reading()

    def _resume_reading(self) -> None:
        if (self.transport and not self.closed and not self.done_reading
                and not self._write_paused and not self._backlogged):
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        # Half-closed clients still get their replies; close once they are written.
        self.done_reading = True
        if self.decoder is not None:
            try:
                self.decoder.feed_eof()
            except ProtocolError as exc:
                self._protocol_error(exc)
        self._maybe_close()
        return True

    def drain_close(self) -> None:
        """Called when the server starts draining: close now if nothing is owed."""
        self._maybe_close(draining=True)

    # -- reading ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed or self.done_reading:
            return
        if self.decoder is None:
            if not self._choose_dialect(data):
                return
            data, self.prefix = self.prefix, b""
        try:
            messages = self.decoder.feed(data)  # type: ignore[union-attr]
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if messages:
            if self.dialect == "legacy":
                self._on_legacy(messages[0])
            else:
                # Replies that are ready at once (fast calls) leave in one write: pipelined calls cost
                # one send() per read, not one per call.
                out: list[bytes] = []
                for line in messages:
                    self._on_line(line, out)
                if out:
                    out.append(b"")
                    self._write(b"\n".join(out))
                if self.queued >= MAX_QUEUED_PER_CONNECTION and self.transport is not None:
                    self._backlogged = True
                    self.transport.pause_reading()
                if self.decoder.pending:  # type: ignore[union-attr]
                    # A codec raises an error found after complete lines on its next call.
                    try:
                        self.decoder.feed(b"")  # type: ignore[union-attr]
                    except ProtocolError as exc:
                        self._protocol_error(exc)
                        return
        self._track_partial()

    def _choose_dialect(self, data: bytes) -> bool:
        self.prefix += data
        verdict = sniff(self.prefix)
        if verdict is Verdict.NEED_MORE:
            if len(self.prefix) > MAX_SNIFF_BYTES:
                self._abort()
            else:
                self._track_partial(pending=True)
            return False
        if verdict is Verdict.REJECT:
            self._abort()
            return False
        if verdict is Verdict.JSONISH:
            self._write_line(jsonrpc.encode_error(None, NOT_A_REQUEST))
            self._close()
            return False
        self.dialect = verdict.value
        limit = self.config.max_frame_bytes
        self.decoder = LegacyDecoder(limit) if verdict is Verdict.LEGACY else LineDecoder(limit)
        if self.over_limit:
            self._refuse()
            return False
        self.state.by_dialect[self.dialect] += 1
        return True

    def _track_partial(self, pending: bool | None = None) -> None:
        """Start the whole-request deadline at a request's first byte; stop it at its last."""
        if pending is None:
            pending = bool(self.decoder and self.decoder.pending)
        if pending:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            if self._deadline is None:
                self._deadline = self.loop.call_later(self.config.request_timeout, self._request_timed_out)
        else:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._arm_idle()

    # -- legacy dialect ----------------------------------------------------------

    def _on_legacy(self, payload: bytes) -> None:
        # One call per connection, as the seed did: ignore anything after the frame.
        self.done_reading = True
        if self.transport:
            self.transport.pause_reading()
        try:
            call = legacy.parse_payload(payload, self.config.max_depth)
        except PpyError as exc:
            self._write_legacy_error(exc)
            self._close()
            return
        authed = self.authed or self.dispatcher.check_token(call.token)
        try:
            started = self.dispatcher.begin(call, "legacy", authed, jsonvalue.encode_legacy)
        except PpyError as exc:
            self._write_legacy_error(exc)
            self._close()
            return
        if isinstance(started, bytes):  # finished at once: no task
            self._write(encode_frame(started))
            self._close()
            return
        self.inflight += 1
        self.state.spawn(self._run_legacy(started))

    async def _run_legacy(self, started: Coroutine[Any, Any, bytes]) -> None:
        try:
            body = await started
        except PpyError as exc:
            self._write_legacy_error(exc)
        except asyncio.CancelledError:  # the drain deadline passed: still one answer per request
            self._write_legacy_error(CallTimeout(CUT_OFF))
            raise
        else:
            self._write(encode_frame(body))
        finally:
            self.inflight -= 1
            self._close()

    def _write_legacy_error(self, exc: PpyError) -> None:
        self._write(encode_frame(jsonvalue.encode_legacy_error(legacy.error_message(exc))))

    # -- lines dialect -----------------------------------------------------------

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
        try:
            started = self.dispatcher.begin(item, "lines", self.authed, jsonvalue.encode)
        except PpyError as exc:
            if not item.notify:
                out.append(jsonrpc.encode_error(item.id, exc))
            return
        if isinstance(started, bytes):
            if item.method == "rpc.auth":
                self.authed = True
            if not item.notify:
                out.append(jsonrpc.encode_result(item.id, started))
            return
        self.inflight += 1
        self.queued += 1
        self.state.spawn(self._run_one(item, started))

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

    # -- writing and closing ---------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _write_line(self, data: bytes) -> None:
        self._write(data + b"\n")

    def _send_soon(self, line: bytes) -> None:
        """Queue a reply line from a task; the lines of every task that finishes in this turn of the
        loop leave in one write (one send() for 16 pipelined async calls, not 16)."""
        if self.inflight <= 1 and not self._soon:  # no other call of this connection to wait for
            self._write(line + b"\n")
            return
        if not self._soon:
            self.loop.call_soon(self._flush_soon)
        self._soon.append(line)

    def _flush_soon(self) -> None:
        if self._soon:
            self._soon.append(b"")
            data = b"\n".join(self._soon)
            self._soon.clear()
            self._write(data)

    def _refuse(self) -> None:
        err = Overloaded(f"server has {self.config.max_connections} connections open (--max-connections) "
                         "or is shutting down; retry later")
        if self.dialect == "legacy":
            self._write_legacy_error(err)
        else:
            self._write_line(jsonrpc.encode_error(None, err))
        self._close()

    def _protocol_error(self, exc: ProtocolError) -> None:
        log.info("protocol error from %s: %s", self._peer(), exc.error.message)
        if self.dialect == "legacy":
            self._write_legacy_error(exc.error)
        else:
            self._write_line(jsonrpc.encode_error(None, exc.error))
        if exc.fatal:
            # Read no more, but let calls already running reply before the close.
            self.done_reading = True
            self._cancel_timers()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()
            self._maybe_close()

    def _request_timed_out(self) -> None:
        self._deadline = None
        err = InvalidRequest(f"request not received completely within {self.config.request_timeout:g} s "
                             "(--request-timeout); send each request in one go")
        if self.dialect == "legacy":
            self._write_legacy_error(err)
        elif self.dialect == "lines":
            self._write_line(jsonrpc.encode_error(None, err))
        self._close()

    def _arm_idle(self) -> None:
        """Restart the idle clock.  The timer is not replaced per request (that cost two timer
        operations per call): it fires at the first possible moment and re-arms itself for the rest."""
        self._idle_from = self.loop.time()
        if self._idle is None and not self.closed and self.inflight == 0:
            self._idle = self.loop.call_at(self._idle_from + self.config.idle_timeout, self._idle_fired)

    def _idle_fired(self) -> None:
        self._idle = None
        if self.closed or self.inflight or self.prefix or (self.decoder and self.decoder.pending):
            return  # busy: the idle clock restarts when its calls finish or its request is complete
        due = self._idle_from + self.config.idle_timeout
        if due > self.loop.time():
            self._idle = self.loop.call_at(due, self._idle_fired)
        else:
            self._close()

    def _maybe_close(self, draining: bool = False) -> None:
        if self.inflight:
            return
        pending = bool(self.decoder and self.decoder.pending) or bool(self.prefix)
        if self.done_reading or ((draining or self.state.draining) and not pending):
            self._close()
        elif not pending:
            self._arm_idle()

    def _cancel_timers(self) -> None:
        for timer in (self._idle, self._deadline):
            if timer is not None:
                timer.cancel()
        self._idle = self._deadline = None

    def _close(self) -> None:
        self._cancel_timers()
        self._flush_soon()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (the drain's deadline passed with it still open)."""
        self._abort()

    def _abort(self) -> None:
        self._cancel_timers()
        if self.transport is not None:
            self.transport.abort()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer or "unix socket")
