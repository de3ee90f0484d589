"""Streaming frames, sans I/O: ``rpc.item`` notification lines and Server-Sent Events.

Items arrive already encoded as JSON (by the generator's runner), so both
shapes are built around their bytes without decoding them again::

    {"jsonrpc":"2.0","method":"rpc.item","params":{"id":ID,"seq":N,"item":VALUE}}

    event: item            event: end                  event: error
    data: VALUE            data: {"result":VALUE}      data: {"error":{"code":..,"message":..}}

JSON never contains a raw newline, so each event's ``data`` is one line.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encode = msgspec.json.encode


def item_lines(rid: Any, first_seq: int, items: list[bytes]) -> bytes:
    """One ``rpc.item`` line per item (each ending in ``\\n``), numbered from ``first_seq``."""
    head = b'{"jsonrpc":"2.0","method":"rpc.item","params":{"id":' + _encode(rid) + b',"seq":'
    return b"".join([head + str(seq).encode() + b',"item":' + item + b"}}\n"
                     for seq, item in enumerate(items, first_seq)])


def sse_items(items: list[bytes]) -> bytes:
    return b"".join([b"event: item\ndata: " + item + b"\n\n" for item in items])


def sse_end(result: bytes) -> bytes:
    return b'event: end\ndata: {"result":' + result + b"}\n\n"


def sse_error(error_body: bytes) -> bytes:
    """``error_body`` is the ``{"error": {...}}`` object of the /call error replies."""
    return b"event: error\ndata: " + error_body + b"\n\n"
