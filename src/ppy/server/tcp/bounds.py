"""The fixed bounds of one TCP or Unix connection, beside the ones set by flags (docs/security.md, "Limits").

Together with ``--max-line-bytes``, ``--max-conn-inflight`` and the timeouts they bound what a
single client can make the server hold: bytes before the dialect is known, decoded requests not
yet handled, replies queued in a loop turn and replies waiting in the transport.
"""

#: Whitespace a client may send before its first request; past this it is not a client of ours.
MAX_SNIFF_BYTES = 1024
#: Replies waiting for a client (in the transport's buffer) past which its requests are neither
#: read nor handled; handling resumes once they are down to LOW_WATER.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
#: Requests decoded at a time: the rest of a read stays as bytes in the decoder until handled.
CHUNK_LINES = 64
#: Requests one connection handles per loop turn: a client that sent thousands takes turns with the others.
TURN_BUDGET = 32
#: Replies of one loop turn queued past this many bytes are written at once (and may pause us).
FLUSH_BYTES = 64 * 1024
