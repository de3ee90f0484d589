"""Token guessing on the TCP dialects: how many wrong tokens one connection may try, and the log of it.

A client guessing ``rpc.auth`` tokens on one connection is closed after ``MAX_WRONG_TOKENS``; the
closes are logged at most once per ``LOG_EVERY_S`` with a count of the others, so a guesser opening
connection after connection cannot flood the log either.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("ppy.server")

#: Wrong tokens (``rpc.auth``) one connection may try before it is closed.
MAX_WRONG_TOKENS = 10
#: At most one "closed after wrong tokens" log line per this many seconds (others are counted).
LOG_EVERY_S = 10.0

_last = [0.0, 0]  # when the last line was logged, closes not logged since


def log_wrong_tokens(peer: str) -> None:
    """Log that the connection from ``peer`` is closed for wrong tokens (rate-limited)."""
    now = time.monotonic()
    if now - _last[0] < LOG_EVERY_S:
        _last[1] += 1
        return
    more = int(_last[1])
    _last[0], _last[1] = now, 0
    log.warning("closing connection from %s after %d wrong tokens (rpc.auth)%s", peer, MAX_WRONG_TOKENS,
                f"; {more} more such connections closed since the last report" if more else "")
