"""Where a TCP connection is in its life (``tcp.connection`` makes every transition)."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    SNIFFING = "sniffing"  # the first bytes have not told the dialect yet
    REFUSING = "refusing"  # over --max-connections or draining: answer -32002 in its dialect, then close
    OPEN = "open"  # reading and handling requests
    EOF = "eof"  # the peer closed its side: the requests it sent are still handled
    FINISHING = "finishing"  # reads no more; closes once the replies owed are written
    CLOSING = "closing"  # transport.close() called: flushing
    CLOSED = "closed"  # connection_lost


# The phases as module globals, which is how the connection reads them: ``Phase.OPEN`` is a
# class-attribute look-up through the enum's metaclass (~80 ns on Python 3.11, a global ~8 ns), and a
# connection tests its phase several times per call (docs/performance.md, "The hot path").
SNIFFING, REFUSING, OPEN, EOF = Phase.SNIFFING, Phase.REFUSING, Phase.OPEN, Phase.EOF
FINISHING, CLOSING, CLOSED = Phase.FINISHING, Phase.CLOSING, Phase.CLOSED
READABLE = (SNIFFING, REFUSING, OPEN)  # the phases in which the bytes read are handled
