"""Legacy dialect (the seed's 11-byte header frames): one call per connection, then close."""

from __future__ import annotations

from ppy.errors import PpyError
from ppy.server.tcp import legacy_call as legacy
from ppy.server.tcp.base import ConnectionBase
from ppy.wire import jsonvalue
from ppy.wire.legacy import encode_frame
from ppy.wire.model import Call


class LegacyCalls(ConnectionBase):
    def _on_legacy(self, payload: bytes) -> None:
        # One call per connection, as the seed did: ignore anything after the frame.
        self.done_reading = True
        if self.transport:
            self.transport.pause_reading()
        try:
            call = legacy.parse_payload(payload, self.config.max_depth, self.config.legacy_str_params)
        except PpyError as exc:
            self._write_legacy_error(exc)
            self._close()
            return
        authed = self.authed or self.dispatcher.check_token(call.token)
        try:
            started = self.dispatcher.begin(call, "legacy", authed, jsonvalue.encode_legacy, self._settled_legacy)
        except PpyError as exc:
            self._write_legacy_error(exc)
            self._close()
            return
        if started is not None:  # finished at once
            self._write(encode_frame(started))
            self._close()
            return
        self.inflight += 1  # _settled_legacy is called when it ends

    def _settled_legacy(self, call: Call, outcome: bytes | PpyError) -> None:
        if isinstance(outcome, PpyError):
            self._write_legacy_error(outcome)
        else:
            self._write(encode_frame(outcome))
        self.inflight -= 1
        self._close()
