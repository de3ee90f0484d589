"""Tell a connection's dialect from its first bytes (docs/protocol.md).

    first non-whitespace byte   dialect
    0-9                         legacy (11-byte header frames)
    { or [                      lines (JSON-RPC 2.0, one per line)
    " - t f n ] }               not a request, but JSON-ish: parse error line, close
    anything else               close without a word (HTTP, TLS, garbage)

Leading whitespace is allowed before ``{``/``[`` only; a legacy header must
start at byte 0, as the seed's did.
"""

from __future__ import annotations

import enum

from ppy.wire.model import Dialect


class Verdict(enum.Enum):
    LEGACY = Dialect.LEGACY.value
    LINES = Dialect.LINES.value
    NEED_MORE = "need-more"
    JSONISH = "jsonish"
    REJECT = "reject"


_WS = b" \t\r\n"
_JSONISH = b'"-tfn]}'


def sniff(prefix: bytes) -> Verdict:
    if not prefix:
        return Verdict.NEED_MORE
    if 48 <= prefix[0] <= 57:
        return Verdict.LEGACY
    stripped = prefix.lstrip(_WS)
    if not stripped:
        return Verdict.NEED_MORE
    first = stripped[0]
    if first in b"{[":
        return Verdict.LINES
    if first in _JSONISH:
        return Verdict.JSONISH
    return Verdict.REJECT
