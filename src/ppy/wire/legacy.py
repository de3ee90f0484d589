"""The seed's framing, byte for byte (docs/protocol.md, section 2).

A frame is an 11-byte ASCII header followed by the payload::

    offset  size  content
    0       11    decimal byte length of the payload, '.', then '0' padding
    11      N     payload: UTF-8 JSON

    b'39.00000000{"entry":"h","func":"hello","param":[]}'
      └─ header ─┘└──────── 39 bytes of payload ───────┘

(PHP's ``json_encode`` writes that compact payload; Python's ``json.dumps``
spacing makes the same call 44 bytes.)  A payload with a bad header after good
frames, or cut off by EOF, fails the same way however the bytes were split.

Accepted headers match ``^[0-9]{1,10}\\.[0-9]*$`` and are exactly 11 bytes.
The seed parsed them with ``int(float(h))`` and read on ``recv`` sizes, so a
bad header could hang or truncate; here it is a :class:`ProtocolError` at once.
"""

from __future__ import annotations

import re

from ppy.errors import InvalidRequest, ParseError, ProtocolError

HEADER_SIZE = 11
_HEADER = re.compile(rb"[0-9]{1,10}\.[0-9]*\Z")


def encode_frame(payload: bytes) -> bytes:
    """Frame ``payload`` exactly as the seed's server did (``'39.' + '0' * 8``)."""
    head = str(len(payload)).encode("ascii") + b"."
    if len(head) > HEADER_SIZE:
        raise ValueError(f"payload of {len(payload)} bytes does not fit an 11-byte legacy header")
    return head.ljust(HEADER_SIZE, b"0") + payload


def parse_header(header: bytes, max_frame_bytes: int) -> int:
    """The payload length announced by an 11-byte header, checked against the limit."""
    if len(header) != HEADER_SIZE or not _HEADER.match(header):
        shown = header.decode("ascii", "backslashreplace")
        raise ProtocolError(ParseError(
            f"bad legacy header {shown!r}: expected 11 bytes like '39.00000000' "
            "(payload length in bytes, '.', '0' padding)"))
    size = int(header[: header.index(b".")])
    if size > max_frame_bytes:
        raise ProtocolError(InvalidRequest(
            f"legacy frame of {size} bytes exceeds --max-frame-bytes {max_frame_bytes}; "
            "send less data or raise the server's limit"))
    return size


class LegacyDecoder:
    """Incremental decoder: ``feed`` bytes, get complete payloads back.

    It never buffers more than the header plus the announced payload, and the
    payload length is checked before any payload byte is kept.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._need: int | None = None  # payload size once the header is parsed

    @property
    def pending(self) -> int:
        """Bytes received toward a frame that is not complete yet (header included).

        The server runs its whole-request deadline while this is non-zero, so a
        consumed header must still count: otherwise a client that sends just the
        11 header bytes would turn the deadline off.
        """
        return len(self._buf) + (HEADER_SIZE if self._need is not None else 0)

    @property
    def ready(self) -> bool:
        """Always False: every complete frame is returned by the ``feed`` that completes it."""
        return False

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        """Complete payloads in ``data`` (``limit`` is accepted for symmetry with the lines decoder:
        a legacy connection carries one call, so there is never more than one to hold back)."""
        self._buf += data
        frames: list[bytes] = []
        while True:
            if self._need is None:
                try:
                    if len(self._buf) < HEADER_SIZE:
                        # Fail early on a header that can never become valid.
                        if self._buf and not _could_be_header(bytes(self._buf)):
                            raise ProtocolError(ParseError(
                                f"bad legacy header {bytes(self._buf)!r}: expected 11 bytes like '39.00000000'"))
                        return frames
                    self._need = parse_header(bytes(self._buf[:HEADER_SIZE]), self.max_frame_bytes)
                except ProtocolError:
                    if frames:  # deliver the good frames; the bad bytes stay and fail the next feed
                        return frames
                    raise
                del self._buf[:HEADER_SIZE]
            if len(self._buf) < self._need:
                return frames
            frames.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = None

    def feed_eof(self) -> None:
        """The peer closed: a partial frame is an error, nothing is not."""
        if self._need is None and self._buf:
            # A bad header that followed good frames in the same read is still
            # the error to report, whatever the read boundaries were.
            self.feed(b"")
        if self._need is not None:
            raise ProtocolError(InvalidRequest(
                f"connection closed after {len(self._buf)} of the {self._need} payload bytes the header "
                "announced; send the whole payload, its length counted in UTF-8 bytes"))
        if self._buf:
            raise ProtocolError(InvalidRequest(
                f"connection closed after {len(self._buf)} bytes of an 11-byte legacy header; "
                "send the whole frame"))


def _could_be_header(prefix: bytes) -> bool:
    digits = 0
    for i, b in enumerate(prefix):
        if 48 <= b <= 57:
            if b"." in prefix[:i]:
                continue
            digits += 1
            if digits > 10:
                return False
        elif b == 46 and digits and b"." not in prefix[:i]:
            continue
        else:
            return False
    return True
