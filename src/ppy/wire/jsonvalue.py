"""JSON values in and out, with the safety limits every dialect shares.

Decoding enforces a nesting depth (default 64) without recursing on hostile
input (``nests_too_deep``: a bounded walk of the decoded value, or a bracket
count when the value has many elements).  Encoding accepts the extra types of docs/app-folder.md (tuple, set,
datetime, Decimal, UUID, Enum, dataclass, bytes) and refuses NaN/Infinity,
which msgspec would silently write as ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec

from ppy.errors import InternalError, InvalidRequest, ParseError

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder(decimal_format="string", uuid_format="canonical")


def decode(data: bytes | str, max_depth: int) -> Any:
    """Decode one JSON text, or raise ParseError / InvalidRequest (too deep)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    try:
        value = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ParseError(f"request is not valid JSON ({exc}); send one UTF-8 JSON text") from None
    except UnicodeDecodeError as exc:
        raise ParseError(f"request is not valid UTF-8 (byte {exc.start}); encode text as UTF-8") from None
    except RecursionError:
        raise InvalidRequest(f"request nests deeper than {max_depth} levels; flatten it") from None
    if nests_too_deep(value, data, max_depth):
        raise InvalidRequest(f"request nests deeper than {max_depth} levels; flatten it")
    return value


#: Values :func:`nests_too_deep` looks at before it counts brackets instead.
WALK_BUDGET = 256


def nests_too_deep(value: Any, text: bytes, limit: int) -> bool:
    """Whether ``value`` (decoded from ``text``) has more than ``limit`` nested arrays/objects.

    Exact, cheapest way first.  A text no longer than the limit cannot hold more brackets.  A value made
    of few arrays and objects (a 64 KiB string in a list) is walked: a bracket count over the bytes costs
    ~0.3 ns a byte, ~40 µs for 64 KiB, against ~0.5 µs for the walk.  A value with many elements (a list
    of 10,000 numbers) would cost more to walk than to count: past ``WALK_BUDGET`` elements the count in
    C decides whether the full walk is needed at all.
    """
    if len(text) <= limit:
        return False
    verdict = depth_exceeds(value, limit, WALK_BUDGET)
    if verdict is None:
        return text.count(b"[") + text.count(b"{") > limit and bool(depth_exceeds(value, limit))
    return verdict


def depth_exceeds(value: Any, limit: int, budget: int | None = None) -> bool | None:
    """True when ``value`` has more than ``limit`` nested arrays/objects (iterative); None when that would
    take looking at more than ``budget`` elements."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Any
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        if budget is not None:
            budget -= len(children)
            if budget < 0:
                return None
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(x for x in item if isinstance(x, (float, list, tuple, dict, set, frozenset)))
        elif isinstance(item, dict):
            stack.extend(x for x in item.values() if isinstance(x, (float, list, tuple, dict, set, frozenset)))
    return False


#: Results that cannot hide a NaN: their output needs no second look.
_SCALARS = frozenset((str, int, bool, type(None)))


def encode(value: Any) -> bytes:
    """Compact JSON for the lines dialect and HTTP; InternalError when impossible.

    msgspec writes NaN and Infinity as ``null``, so a ``null`` in the output is
    checked against the value (converted to builtins first, so NaN hidden in a
    dataclass, an Enum or a Struct is found too).  Results without ``null``
    cost one byte scan.
    """
    try:
        out = _encoder.encode(value)
    except (TypeError, OverflowError, ValueError, RecursionError) as exc:  # ValueError: a lone surrogate
        raise InternalError(_unencodable(value, exc)) from None
    if type(value) not in _SCALARS and b"null" in out and _has_non_finite(msgspec.to_builtins(value)):
        raise InternalError("result contains NaN or Infinity, which JSON cannot carry; return None or a string")
    return out


def _unencodable(value: Any, exc: Exception) -> str:
    return (f"result is not JSON-encodable ({exc}; top-level type {type(value).__name__}); "
            "return JSON types, tuple, set, datetime, Decimal, UUID, Enum, dataclass or bytes")


def _legacy_default(obj: Any) -> Any:
    return msgspec.to_builtins(obj, builtin_types=None, enc_hook=None)


def encode_legacy(value: Any) -> bytes:
    """``json.dumps`` with the seed's separators and ensure_ascii, so replies match byte for byte."""
    try:
        return json.dumps({"data": value, "error": ""}, default=_legacy_default, allow_nan=False).encode("ascii")
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise InternalError(
                "result contains NaN or Infinity, which JSON cannot carry; return None or a string") from None
        raise InternalError(_unencodable(value, exc)) from None
    except (TypeError, OverflowError, RecursionError) as exc:
        raise InternalError(_unencodable(value, exc)) from None


def encode_legacy_error(message: str) -> bytes:
    return json.dumps({"data": [], "error": message}).encode("ascii")
