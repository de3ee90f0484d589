"""One asyncio protocol per TCP or Unix connection: lifecycle, timers, flow control, writing.

The first bytes tell the dialect (``ppy.wire.sniff``); then each complete message goes to one
dialect handler (``tcp.lines``, ``tcp.legacy``; their view of us is ``tcp.dialect.Link``), which
starts calls and queues their replies back here with :meth:`Connection.send`.

Reading, handling and writing meet in :meth:`Connection._pump`, the one place
where flow control lives (docs/security.md, "Limits"):

- the window (``--max-conn-inflight``): with that many calls running, the connection handles no
  further request and is not read until one finishes — TCP backpressure, never an error;
- the output high-water mark (``HIGH_WATER`` in ``tcp.bounds``): while more replies wait than that, the connection
  is not read *and* the requests already read are not handled (their bytes stay undecoded), and
  streams produce no item (``writable``); all resume below ``LOW_WATER``;
- ``--send-timeout``: replies that wait and make no progress for that long (the client stopped
  reading) abort the connection, as does a close that cannot flush; ``--idle-timeout`` and
  ``--request-timeout`` bound the other waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import cast

from ppy.errors import InvalidRequest, Overloaded, ParseError, ProtocolError
from ppy.server.state import ServerState
from ppy.server.tcp.auth import MAX_WRONG_TOKENS, log_wrong_tokens
from ppy.server.tcp.bounds import CHUNK_LINES, FLUSH_BYTES, HIGH_WATER, LOW_WATER, MAX_SNIFF_BYTES, TURN_BUDGET
from ppy.server.tcp.dialect import Handler
from ppy.server.tcp.legacy import LegacyHandler
from ppy.server.tcp.lines import LinesHandler
from ppy.server.tcp.phase import CLOSED, CLOSING, EOF, FINISHING, OPEN, READABLE, REFUSING, SNIFFING
from ppy.wire import jsonrpc
from ppy.wire.model import Dialect
from ppy.wire.sniff import Verdict, sniff

log = logging.getLogger("ppy.server")

NOT_A_REQUEST = ParseError(
    "not a request: send a JSON-RPC 2.0 object per line, or a legacy 11-byte header frame")


class Connection(asyncio.BaseProtocol):  # not asyncio.Protocol: see tls.DecryptsInPlace
    def __init__(self, state: ServerState, refusal: str | None = None) -> None:
        """``refusal``: answer every client "overloaded" with this reason (the server is out of descriptors)."""
        self.state = state
        self.refusal = refusal
        self.config = state.config
        self.dispatcher = state.dispatcher
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.phase = SNIFFING
        self.dialect: Dialect | None = None
        self.handler: Handler | None = None
        self.prefix = b""  # bytes received before the dialect is known
        self.authed = state.dispatcher.token is None
        self.window = state.config.max_conn_inflight
        self.calls = 0  # calls of this connection running (a batch counts as its calls)
        self.wrong_tokens = 0
        self._lines: deque[bytes] = deque()  # decoded messages not handled yet (at most CHUNK_LINES)
        self._out: list[bytes] = []  # replies of this loop turn, written together
        self._out_bytes = 0
        self._flush_posted = False
        self._pumping = False
        self._reading = True
        self._output_blocked = False  # the transport holds more than HIGH_WATER (pause_writing)
        self._idle: asyncio.TimerHandle | None = None
        self._idle_from = 0.0  # loop time of the last activity (see _arm_idle)
        self._deadline: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._send_mark = 0  # bytes waiting when the send timer was armed
        self.lost: asyncio.Future[None] = self.loop.create_future()  # the drain awaits the last byte written

    # -- lifecycle -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        state = self.state
        if self.refusal or state.open_connections >= self.config.max_connections or state.draining:
            # Answer in the client's own dialect once we know it, then close.
            self.phase = REFUSING
            state.refused += 1
            self._deadline = self.loop.call_later(1.0, self.abort)
            return
        state.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = CLOSED
        self._cancel_timers()
        if not self.lost.done():
            self.lost.set_result(None)
        if self in self.state.connections:
            self.state.connections.discard(self)
            if self.dialect:
                self.state.by_dialect[self.dialect] -= 1

    def data_received(self, data: bytes) -> None:
        handler = self.handler
        if handler is None or self.phase is not OPEN:  # one test for the common case: an open connection
            if handler is not None or self.phase not in READABLE:
                return
            if not self._choose_dialect(data):
                return
            data, self.prefix = self.prefix, b""
            handler = self.handler
            assert handler is not None
        try:
            self._lines.extend(handler.decoder.feed(data, CHUNK_LINES))
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        self._pump()

    def eof_received(self) -> bool | None:
        # Half-closed clients still get their replies; close once they are written.
        if self.phase is OPEN:
            self.phase = EOF
            self._pump()
        elif self.phase in (SNIFFING, REFUSING):
            self.phase = FINISHING
            self._maybe_close()
        return True

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop reading and handling its requests.
        self._output_blocked = True
        self._set_reading(False)
        self._arm_send_timer()

    def resume_writing(self) -> None:
        self._output_blocked = False
        self._pump()
        if self.handler is not None:  # [stream hook] streams paused at the high-water mark go on
            self.handler.resumed()

    @property
    def writable(self) -> bool:  # [stream hook] what a stream waits for (tcp/stream.py)
        return not self._output_blocked

    def drain_close(self) -> None:
        """Called when the server starts draining: close now if nothing is owed."""
        self._maybe_close(draining=True)

    def goaway(self) -> None:  # a handover (ppy.server.handover): the lines handler says rpc.goaway once
        if self.handler is not None and self.phase in (OPEN, EOF):
            self.handler.goaway()

    def abort(self) -> None:
        """Drop the connection now, unsent replies and all (a deadline passed)."""
        self._cancel_timers()
        if self.phase is not CLOSED:
            self.phase = CLOSING
        if self.transport is not None:
            self.transport.abort()

    # -- the one place: read, handle, write ------------------------------------------

    def _pump(self) -> None:
        """Handle the requests read so far as far as the window and the output allow, then decide
        whether to read more.  Called on data, when a call finishes and when replies drained."""
        handler = self.handler
        if handler is None or self._pumping:
            return
        self._pumping = True
        budget = TURN_BUDGET
        handle, decoder, lines = handler.handle, handler.decoder, self._lines
        try:
            while lines or (decoder.buffer and decoder.ready):  # the attribute first: one request per read
                if not (((phase := self.phase) is OPEN or phase is EOF) and not self._output_blocked
                        and self.calls < self.window):
                    break  # flow control: what was read stays read (as bytes, past CHUNK_LINES)
                if not lines:
                    try:
                        lines.extend(decoder.feed(b"", CHUNK_LINES))
                    except ProtocolError as exc:
                        self._protocol_error(exc)
                        break
                    continue
                if not budget:  # let other connections have the loop; go on in the next turn
                    self.loop.call_soon(self._pump)
                    break
                budget -= 1
                line = lines.popleft()
                if not handle(line):
                    lines.appendleft(line)
                    break
        finally:
            self._pumping = False
        if self._out:
            self._flush()
        phase, calls, buffered = self.phase, self.calls, decoder.buffer
        held = bool(lines) or (bool(buffered) and decoder.ready)
        if phase is EOF and not held:
            phase = self.phase = FINISHING
            try:
                decoder.feed_eof()
            except ProtocolError as exc:
                self._protocol_error(exc)
        reading = phase is OPEN and not self._output_blocked and calls < self.window and not held
        if reading is not self._reading:
            self._set_reading(reading)
        if buffered or self._deadline is not None:
            self._track_partial()
        if not calls:
            self._maybe_close()

    def finished(self, weight: int, reply: bytes | None) -> None:
        """``weight`` calls of this connection ended; ``reply`` (framed) is what they answer, if anything."""
        calls = self.calls = self.calls - weight
        if reply is not None:
            if not calls and not self._out:  # nothing else to wait for: no extra loop turn
                self._write(reply)
            else:  # send(), inlined: this runs once per call
                self._out.append(reply)
                self._out_bytes += len(reply)
                if self._out_bytes >= FLUSH_BYTES:
                    self._flush()
                elif not self._flush_posted:
                    self._flush_posted = True
                    self.loop.call_soon(self._flush)
        phase = self.phase
        if (not self._reading or self._lines) and (phase is OPEN or phase is EOF):
            self._pump()  # the window may have opened
        elif not calls:
            handler = self.handler  # set: only a handler's calls finish
            if phase is OPEN and handler is not None and not handler.decoder.buffer and not self.state.draining:
                self._idle_from = self.loop.time()  # _maybe_close, inlined for its common case (once per call)
                if self._idle is None:
                    self._idle = self.loop.call_at(self._idle_from + self.config.idle_timeout, self._idle_fired)
            else:
                self._maybe_close()  # or restart the idle clock

    def send(self, frame: bytes) -> None:
        """Queue a framed reply: the replies of one loop turn leave in one write (one send() for 16
        pipelined calls, not 16)."""
        self._out.append(frame)
        self._out_bytes += len(frame)
        if self._out_bytes >= FLUSH_BYTES:
            self._flush()
        elif not self._pumping and not self._flush_posted:
            self._flush_posted = True
            self.loop.call_soon(self._flush)

    def send_line(self, line: bytes) -> None:
        self.send(line + b"\n")

    def wrong_token(self) -> None:
        """A wrong token was tried: past MAX_WRONG_TOKENS the connection reads no more and closes."""
        self.wrong_tokens += 1
        if self.wrong_tokens < MAX_WRONG_TOKENS:
            return
        log_wrong_tokens(self._peer())
        self.phase = FINISHING
        self._lines.clear()
        self._set_reading(False)

    # -- reading -------------------------------------------------------------------

    def _choose_dialect(self, data: bytes) -> bool:
        self.prefix += data
        verdict = sniff(self.prefix)
        if verdict is Verdict.NEED_MORE:
            if len(self.prefix) > MAX_SNIFF_BYTES:
                self.abort()
            else:
                self._track_partial()
            return False
        if verdict is Verdict.REJECT:
            self.abort()
            return False
        if verdict is Verdict.JSONISH:
            self._write(jsonrpc.encode_error(None, NOT_A_REQUEST) + b"\n")
            self._close()
            return False
        self.handler = LegacyHandler(self) if verdict is Verdict.LEGACY else LinesHandler(self)
        if self.phase is REFUSING:
            self._write(self.handler.error_frame(Overloaded(self.refusal or (
                f"server has {self.config.max_connections} connections open (--max-connections) "
                "or is shutting down; retry later"))))
            self._close()
            return False
        self.dialect = Dialect.LEGACY if verdict is Verdict.LEGACY else Dialect.LINES
        self.state.by_dialect[self.dialect] += 1
        self.phase = OPEN
        return True

    def _set_reading(self, reading: bool) -> None:
        transport = self.transport
        if reading == self._reading or transport is None or transport.is_closing():
            return
        self._reading = reading
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def finish_reading(self) -> None:
        """Read no more from this connection (a legacy connection carries one call)."""
        if self.phase is OPEN or self.phase is EOF:
            self.phase = FINISHING
        self._set_reading(False)

    def _protocol_error(self, exc: ProtocolError) -> None:
        log.info("protocol error from %s: %s", self._peer(), exc.error.message)
        if self.handler is not None:
            self.send(self.handler.error_frame(exc.error))
            self._flush()
        if exc.fatal:
            # Read no more, but let calls already running reply before the close.
            self.phase = FINISHING
            self._lines.clear()
            self._cancel_timers()
            self._set_reading(False)
            self._maybe_close()

    # -- timers ----------------------------------------------------------------------

    def _track_partial(self) -> None:
        """Run the whole-request deadline from a request's first byte to its last.  Requests that are
        complete but held back by flow control are not the client's delay."""
        if self.handler is None:
            partial = bool(self.prefix)
        else:
            decoder = self.handler.decoder
            partial = bool(decoder.buffer) and not self._lines and not decoder.ready
        if partial and self.phase in READABLE:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            if self._deadline is None:
                self._deadline = self.loop.call_later(self.config.request_timeout, self._request_timed_out)
        elif self._deadline is not None and self.phase is not REFUSING:
            self._deadline.cancel()
            self._deadline = None

    def _request_timed_out(self) -> None:
        self._deadline = None
        err = InvalidRequest(f"request not received completely within {self.config.request_timeout:g} s "
                             "(--request-timeout); send each request in one go")
        if self.handler is not None:
            self.send(self.handler.error_frame(err))
        self._close()

    def _arm_idle(self) -> None:
        """Restart the idle clock.  The timer is not replaced per request (that cost two timer
        operations per call): it fires at the first possible moment and re-arms itself for the rest."""
        self._idle_from = self.loop.time()
        if self._idle is None and self.phase is not CLOSED and not self.calls:
            self._idle = self.loop.call_at(self._idle_from + self.config.idle_timeout, self._idle_fired)

    def _idle_fired(self) -> None:
        self._idle = None
        if self.phase is CLOSED or self.calls or self._owes_input():
            return  # busy: the idle clock restarts when its calls finish or its request is complete
        due = self._idle_from + self.config.idle_timeout
        if due > self.loop.time():
            self._idle = self.loop.call_at(due, self._idle_fired)
        else:
            self._close()

    def _arm_send_timer(self) -> None:
        if self._send_timer is None and self.transport is not None:
            self._send_mark = self.transport.get_write_buffer_size()
            self._send_timer = self.loop.call_later(self.config.send_timeout, self._send_check)

    def _send_check(self) -> None:
        """Replies have waited --send-timeout: abort unless the client read some of them meanwhile."""
        self._send_timer = None
        if self.transport is None or self.phase is CLOSED:
            return
        waiting = self.transport.get_write_buffer_size()
        if not waiting or (waiting < self._send_mark and (self._output_blocked or self.phase is CLOSING)):
            if waiting:
                self._arm_send_timer()  # progress: give it another period
            return
        if not self._output_blocked and self.phase is not CLOSING:
            return  # below the high-water mark again and not closing: nothing is stuck
        log.info("aborting connection from %s: %d bytes of replies not read for %g s (--send-timeout)",
                 self._peer(), waiting, self.config.send_timeout)
        self.abort()

    def _cancel_timers(self) -> None:
        for timer in (self._idle, self._deadline, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._idle = self._deadline = self._send_timer = None

    # -- writing and closing -----------------------------------------------------------

    def _flush(self) -> None:
        self._flush_posted = False
        if self._out:
            data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
            self._out.clear()
            self._out_bytes = 0
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _owes_input(self) -> bool:
        """A request is partly received, or read and not handled yet."""
        handler = self.handler
        return bool(self.prefix) if handler is None else bool(self._lines or handler.decoder.buffer)

    @property
    def held(self) -> bool:
        """Complete requests were read and wait to be handled (flow control holds them back)."""
        decoder = self.handler.decoder if self.handler is not None else None
        return bool(self._lines) or (decoder is not None and bool(decoder.buffer) and decoder.ready)

    def _maybe_close(self, draining: bool = False) -> None:
        """Nothing is running: close if the connection is done, else restart its idle clock."""
        phase = self.phase
        if self.calls or phase is CLOSING or phase is CLOSED:
            return
        owed = self._owes_input()
        if phase is FINISHING or ((draining or self.state.draining) and not owed):
            self._close()
        elif not owed:  # _arm_idle, inlined (once per call)
            self._idle_from = self.loop.time()
            if self._idle is None:
                self._idle = self.loop.call_at(self._idle_from + self.config.idle_timeout, self._idle_fired)

    def _close(self) -> None:
        if self.phase is CLOSED:
            return
        self._cancel_timers()
        self._flush()
        self.phase = CLOSING
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():  # close() waits for the client to read them: bound it
                self._arm_send_timer()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer or "unix socket")
