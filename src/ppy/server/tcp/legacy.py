"""Legacy dialect (the seed's 11-byte header frames): one call per connection, then close."""

from __future__ import annotations

from ppy.errors import PpyError
from ppy.server.tcp.dialect import Link
from ppy.wire import legacy
from ppy.wire.model import Call, Dialect


class LegacyHandler:
    def __init__(self, conn: Link) -> None:
        self.conn = conn
        self.dispatcher = conn.state.dispatcher
        self.config = conn.state.config
        self.decoder = legacy.LegacyDecoder(self.config.max_frame_bytes)

    def error_frame(self, error: PpyError) -> bytes:
        return legacy.encode_error(error)

    def resumed(self) -> None:
        """Nothing waits for output: a legacy connection does not stream."""

    def goaway(self) -> None:
        """Nothing to say: a legacy connection carries one call and closes anyway."""

    def handle(self, payload: bytes) -> bool:
        conn = self.conn
        conn.finish_reading()  # one call per connection, as the seed did: ignore anything after the frame
        try:
            call = legacy.parse_payload(payload, self.config.max_depth, self.config.legacy_str_params)
            authed = conn.authed or self.dispatcher.check_token(call.token)
            started = self.dispatcher.begin(call, Dialect.LEGACY, authed, legacy.encode_result, self._settled)
        except PpyError as exc:
            conn.send(legacy.encode_error(exc))
            return True
        if started is None:  # running: _settled is called when it ends
            conn.calls += 1
        else:
            conn.send(legacy.encode_reply(started))
        return True

    def _settled(self, call: Call, outcome: bytes | PpyError) -> None:
        self.conn.finished(1, legacy.encode_error(outcome) if isinstance(outcome, PpyError)
                           else legacy.encode_reply(outcome))
