"""Newline-delimited framing for the lines dialect (SPEC §2.2).

    offset  size  content
    0       N     one UTF-8 JSON-RPC request object or batch array
    N       1     b'\\n'

A line longer than ``max_frame_bytes`` (newline excluded) is a fatal
:class:`ProtocolError`: it is detected while buffering, so no more than
``max_frame_bytes`` + one read is ever held.  ``\\r\\n`` endings are accepted.
"""

from __future__ import annotations

from ppy.errors import InvalidRequest, ProtocolError


class LineDecoder:
    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already known to hold no newline

    @property
    def pending(self) -> int:
        """Bytes of a line received without its newline yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if not self._buf and data.endswith(b"\n") and data.count(b"\n") == 1:
            # The common case: one whole request in one read.
            line = data[:-1]
            self._check(len(line))
            return [line] if line.strip() else []
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while True:
            nl = self._buf.find(b"\n", max(start, self._scanned))
            if nl < 0:
                break
            self._check(nl - start)
            line = bytes(self._buf[start:nl])
            if line.strip():
                lines.append(line)
            start = nl + 1
            self._scanned = start
        if start:
            del self._buf[:start]
        self._scanned = len(self._buf)
        self._check(len(self._buf))
        return lines

    def _check(self, size: int) -> None:
        if size > self.max_frame_bytes:
            self._buf.clear()
            self._scanned = 0
            raise ProtocolError(InvalidRequest(
                f"line longer than --max-frame-bytes ({self.max_frame_bytes} bytes); "
                "split the request or raise the server's limit"))

    def feed_eof(self) -> None:
        """A last line without its newline is ignored: the client never finished it."""
        self._buf.clear()
        self._scanned = 0


def encode_line(payload: bytes) -> bytes:
    return payload + b"\n"
