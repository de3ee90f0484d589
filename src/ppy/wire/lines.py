"""Newline-delimited framing for the lines dialect (docs/protocol.md, section 3).

    offset  size  content
    0       N     one UTF-8 JSON-RPC request object or batch array
    N       1     b'\\n'   (b'\\r\\n' is accepted too; the b'\\r' is not part of the line)

Whitespace-only lines are skipped.  A line longer than ``max_frame_bytes``
(terminator excluded) is a fatal :class:`ProtocolError`: it is detected while
buffering, so no more than ``max_frame_bytes`` + one read is ever held.

The result never depends on how the bytes were split into reads: complete
lines that precede a bad one in the same read are returned first, and the
error is raised by the next ``feed()``/``feed_eof()`` (``pending`` stays
non-zero until then, so a server knows something is still owed).
"""

from __future__ import annotations

from ppy.errors import InvalidRequest, ProtocolError

_CR = 13
#: Reads up to this size that hold only whole lines are split in one bytes.split() (see LineDecoder.feed).
SPLIT_MAX = 16384


class LineDecoder:
    """Incremental decoder: ``feed`` bytes, get complete lines back.

    ``feed(data, limit)`` returns at most ``limit`` lines and keeps the rest of the
    bytes undecoded (``ready`` says whether a complete line is still held): a
    server that must stop handling requests (flow control) leaves them here as
    the bytes they arrived as, and asks for more with ``feed(b"", limit)``.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._split_max = min(SPLIT_MAX, max_frame_bytes)  # no line of a read this size can be too long
        #: The bytes held (a partial line, or lines not decoded yet): empty exactly when ``pending`` is 0
        #: and nothing is ``ready`` (a connection checks this attribute on every request).
        self.buffer = bytearray()
        self._pos = 0  # start of the bytes not returned yet
        self._scanned = 0  # bytes of the buffer already known to hold no newline
        self._error: InvalidRequest | None = None  # found after good lines; raised by the next call

    @property
    def pending(self) -> int:
        """Bytes held: of a line received without its newline yet (or found too long), or not decoded yet."""
        return len(self.buffer) - self._pos

    @property
    def ready(self) -> bool:
        """Whether a complete line (or an error found after good lines) is held, waiting for ``feed``."""
        return self._error is not None or self.buffer.find(b"\n", max(self._pos, self._scanned)) >= 0

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        if not self.buffer:  # (an error found after good lines keeps its bytes here: never empty then)
            if (nl := data.find(b"\n")) == len(data) - 1 and 0 < nl <= self.max_frame_bytes \
                    and data[nl - 1] != _CR and (limit is None or limit > 0):
                # The most common case of all: one whole request per read (a client waiting for each reply).
                return [] if data.isspace() else [data[:nl]]
        elif self._error is not None:
            self.buffer.clear()
            self._pos = self._scanned = 0
            error, self._error = self._error, None
            raise ProtocolError(error)
        if not self.buffer and len(data) <= self._split_max and data.endswith(b"\n") and b"\r" not in data:
            # The common case: whole requests in one read (a pipelined burst), none too long, no b'\r':
            # split in C rather than one find() and one copy per line (docs/performance.md).  Only for
            # reads of small requests: bytes.split() and count() compare byte by byte (~0.5 ns a byte),
            # where find() uses memchr (a 64 KiB line is found in under a microsecond).
            whole = data.split(b"\n")
            if limit is None or len(whole) - 1 <= limit:
                del whole[-1]
                if all(whole) and not any(map(bytes.isspace, whole)):
                    return whole
                return [line for line in whole if line and not line.isspace()]
        if data:
            if self._pos:
                del self.buffer[:self._pos]
                self._scanned = max(0, self._scanned - self._pos)
                self._pos = 0
            self.buffer += data
        lines: list[bytes] = []
        buf = self.buffer
        start = self._pos
        while limit is None or len(lines) < limit:
            nl = buf.find(b"\n", max(start, self._scanned))
            if nl < 0:
                break
            end = nl - 1 if nl > start and buf[nl - 1] == _CR else nl
            if end - start > self.max_frame_bytes:
                return self._fail(lines, start)
            line = bytes(memoryview(buf)[start:end])  # one copy (bytes(buf[start:end]) makes two)
            if line.strip():
                lines.append(line)
            start = nl + 1
        else:  # the limit was reached: the rest stays undecoded
            self._pos = start
            if self._pos == len(buf):
                buf.clear()
                self._pos = self._scanned = 0
            return lines
        if start:
            del buf[:start]
        self._pos = 0
        self._scanned = len(buf)
        # An unfinished line may already hold the b'\r' of its b'\r\n': allow that one byte.
        size = len(buf)
        if size > self.max_frame_bytes + 1 or (size > self.max_frame_bytes and buf[-1] != _CR):
            return self._fail(lines, 0)
        return lines

    def _too_long(self) -> InvalidRequest:
        return InvalidRequest(
            f"line longer than --max-frame-bytes ({self.max_frame_bytes} bytes); "
            "split the request or raise the server's limit")

    def _fail(self, lines: list[bytes], start: int) -> list[bytes]:
        """A line is too long: return the complete lines before it, or raise now if there are none."""
        self._scanned = 0
        if lines:
            del self.buffer[:start]  # keep the bad bytes, so ``pending`` says an answer is owed
            self._pos = 0
            self._error = self._too_long()
            return lines
        self.buffer.clear()
        self._pos = 0
        raise ProtocolError(self._too_long())

    def feed_eof(self) -> None:
        """The peer closed its side: anything but whitespace left over is an unfinished request.

        A too-long line found earlier is raised as it would have been by
        ``feed()`` (fatal).  An unfinished line is not ``fatal``: the peer sends
        nothing more anyway, and replies to requests still running must not be
        cut off by a close.
        """
        error, self._error = self._error, None
        rest = bytes(self.buffer[self._pos:])
        self.buffer.clear()
        self._pos = self._scanned = 0
        if error is not None:
            raise ProtocolError(error)
        if rest.strip():
            raise ProtocolError(InvalidRequest(
                f"connection closed in the middle of a line ({len(rest)} bytes without a newline); "
                "end every request with \\n"), fatal=False)


def encode_line(payload: bytes) -> bytes:
    return payload + b"\n"
