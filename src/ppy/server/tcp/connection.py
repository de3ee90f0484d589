"""One asyncio protocol per TCP or Unix connection; the dialect is told from the first bytes.

This module reads: it sniffs the dialect, feeds the decoder and hands complete
messages to the dialect's handler (``conn_legacy``, ``conn_lines``); the
lifecycle, timers and writing shared by both live in ``conn_base``.
"""

from __future__ import annotations

from ppy.errors import ParseError, ProtocolError
from ppy.server.tcp.legacy import LegacyCalls
from ppy.server.tcp.lines import MAX_QUEUED_PER_CONNECTION, LinesCalls
from ppy.wire import jsonrpc
from ppy.wire.legacy import LegacyDecoder
from ppy.wire.lines import LineDecoder
from ppy.wire.sniff import Verdict, sniff

#: Whitespace a client may send before its first request; past this it is not a client of ours.
MAX_SNIFF_BYTES = 1024
NOT_A_REQUEST = ParseError(
    "not a request: send a JSON-RPC 2.0 object per line, or a legacy 11-byte header frame")


class Connection(LinesCalls, LegacyCalls):
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
