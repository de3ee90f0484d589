"""The connection's lifecycle, shared by both TCP dialects: limits, timers, writing and closing.

Connections are cheap (no thread each); only calls consume the bounded
runner.  Every wait is bounded: ``--idle-timeout`` between requests, and
``--request-timeout`` from a request's first byte to its last, which a
client trickling one byte a second cannot reset.  The dialects' call
handling lives in ``conn_legacy`` and ``conn_lines``; reading and telling
the dialect apart in ``tcp``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from ppy.errors import InvalidRequest, Overloaded, PpyError, ProtocolError
from ppy.server.state import ServerState
from ppy.server.tcp import legacy_call as legacy
from ppy.wire import jsonrpc, jsonvalue
from ppy.wire.legacy import LegacyDecoder, encode_frame
from ppy.wire.lines import LineDecoder

log = logging.getLogger("ppy.server")


class ConnectionBase(asyncio.Protocol):
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

    def _write_legacy_error(self, exc: PpyError) -> None:
        self._write(encode_frame(jsonvalue.encode_legacy_error(legacy.error_message(exc))))

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
