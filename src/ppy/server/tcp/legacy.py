"""Legacy dialect (the seed's 11-byte header frames): one call per connection, then close."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, cast

from ppy.app.dispatch import PENDING
from ppy.errors import CallTimeout, PpyError
from ppy.server.tcp import legacy_call as legacy
from ppy.server.tcp.base import CUT_OFF, ConnectionBase
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
            call = legacy.parse_payload(payload, self.config.max_depth)
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
        if isinstance(started, bytes):  # finished at once: no task
            self._write(encode_frame(started))
            self._close()
            return
        self.inflight += 1
        if started is not PENDING:  # else the runner calls _settled_legacy when it is done: no task
            self.state.spawn(self._run_legacy(cast(Coroutine[Any, Any, bytes], started)))

    def _settled_legacy(self, call: Call, outcome: bytes | PpyError) -> None:
        if isinstance(outcome, PpyError):
            self._write_legacy_error(outcome)
        else:
            self._write(encode_frame(outcome))
        self.inflight -= 1
        self._close()

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
