"""The legacy dialect, whole: framing (byte for byte the seed's), payload → Call, replies (docs/protocol.md).

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

from ppy.errors import ApplicationError, InvalidRequest, MethodNotFound, ParseError, PpyError, ProtocolError
from ppy.wire import jsonvalue
from ppy.wire.model import ENTRY_RE, Call

HEADER_SIZE = 11
_HEADER = re.compile(rb"[0-9]{1,10}\.[0-9]*\Z")
_FUNC = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


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
        #: Every byte of the frame received so far, header included: empty exactly when nothing is
        #: owed (a connection checks this attribute on every request instead of ``pending``).
        self.buffer = bytearray()
        self._need: int | None = None  # payload size once the header is parsed

    @property
    def pending(self) -> int:
        """Bytes received toward a frame that is not complete yet (header included).

        The server runs its whole-request deadline while this is non-zero, so a
        consumed header must still count: otherwise a client that sends just the
        11 header bytes would turn the deadline off.
        """
        return len(self.buffer)

    @property
    def ready(self) -> bool:
        """Always False: every complete frame is returned by the ``feed`` that completes it."""
        return False

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        """Complete payloads in ``data`` (``limit`` is accepted for symmetry with the lines decoder:
        a legacy connection carries one call, so there is never more than one to hold back)."""
        buf = self.buffer
        buf += data
        frames: list[bytes] = []
        while True:
            if self._need is None:
                try:
                    if len(buf) < HEADER_SIZE:
                        # Fail early on a header that can never become valid.
                        if buf and not _could_be_header(bytes(buf)):
                            raise ProtocolError(ParseError(
                                f"bad legacy header {bytes(buf)!r}: expected 11 bytes like '39.00000000'"))
                        return frames
                    self._need = parse_header(bytes(buf[:HEADER_SIZE]), self.max_frame_bytes)
                except ProtocolError:
                    if frames:  # deliver the good frames; the bad bytes stay and fail the next feed
                        return frames
                    raise
            end = HEADER_SIZE + self._need
            if len(buf) < end:
                return frames
            frames.append(bytes(buf[HEADER_SIZE:end]))
            del buf[:end]
            self._need = None

    def feed_eof(self) -> None:
        """The peer closed: a partial frame is an error, nothing is not."""
        if self._need is None and self.buffer:
            # A bad header that followed good frames in the same read is still
            # the error to report, whatever the read boundaries were.
            self.feed(b"")
        if self._need is not None:
            raise ProtocolError(InvalidRequest(
                f"connection closed after {len(self.buffer) - HEADER_SIZE} of the {self._need} payload bytes "
                "the header announced; send the whole payload, its length counted in UTF-8 bytes"))
        if self.buffer:
            raise ProtocolError(InvalidRequest(
                f"connection closed after {len(self.buffer)} bytes of an 11-byte legacy header; "
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


# -- payload -> Call, and the reply ------------------------------------------------------


def parse_payload(payload: bytes, max_depth: int, str_params: bool = False) -> Call:
    """``{"entry", "func", "param", "token"?, "timeout"?}`` → Call, or raise a PpyError saying what is wrong.

    ``str_params`` (``--legacy-str-params``) passes ``str(value)`` of each positional param, as the seed did.
    """
    doc = jsonvalue.decode(payload, max_depth)
    if not isinstance(doc, dict):
        raise InvalidRequest('payload must be a JSON object {"entry": ..., "func": ..., "param": [...]}')
    entry, func = doc.get("entry"), doc.get("func")
    if not isinstance(entry, str) or not entry or not isinstance(func, str) or not func:
        raise InvalidRequest('"entry" and "func" must be non-empty strings, e.g. {"entry": "h", "func": "hello"}')
    if not ENTRY_RE.match(entry):
        raise MethodNotFound(f"entry {entry!r} is not a module name: use dot-separated names like 'billing.invoice'")
    if not _FUNC.match(func):
        raise MethodNotFound(f"func {func!r} is not a public function name: letters, digits and '_', not leading '_'")
    param = doc.get("param", [])
    if param is None:
        param = []
    if not isinstance(param, (list, dict)):
        raise InvalidRequest('"param" must be an array (positional) or an object (keyword arguments)')
    if str_params and isinstance(param, list):
        param = [str(v) for v in param]
    timeout = doc.get("timeout")
    if timeout is not None and (type(timeout) not in (int, float) or timeout <= 0):
        raise InvalidRequest('"timeout" must be a positive number of seconds')
    token = doc.get("token")
    return Call(f"{entry}.{func}", param, None, False, timeout, token if isinstance(token, str) else None)


def error_message(error: PpyError) -> str:
    """The non-empty ``error`` string of a legacy reply."""
    if isinstance(error, ApplicationError):
        return f"{error.data.get('type', 'Exception')}: {error.message}"
    return error.message or type(error).__name__


#: Encodes a result as a legacy reply payload (``{"data": result, "error": ""}``, the seed's bytes).
encode_result = jsonvalue.encode_legacy


def encode_reply(payload: bytes) -> bytes:
    """The frame of a reply payload made by :data:`encode_result`."""
    return encode_frame(payload)


def encode_error(error: PpyError) -> bytes:
    """The frame of an error reply: ``{"data": [], "error": "<message>"}``."""
    return encode_frame(jsonvalue.encode_legacy_error(error_message(error)))
