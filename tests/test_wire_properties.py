"""Property tests of the codec invariants (docs/protocol.md), with hypothesis.

- any bytes, split anywhere -> messages or ProtocolError, nothing else, and the
  same outcome however the stream was split; memory held stays bounded;
- decode(encode(m)) == m for legacy frames, lines and JSON-RPC requests;
- jsonrpc.parse never raises; nesting 100,000 deep is InvalidRequest, not RecursionError;
- results: NaN/Infinity are InternalError, and the docs/app-folder.md extra types encode the
  same way in the lines/HTTP encoder and the legacy (json.dumps) encoder.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppy.errors import InternalError, InvalidRequest, ProtocolError
from ppy.wire import jsonrpc, jsonvalue
from ppy.wire.legacy import HEADER_SIZE, LegacyDecoder, encode_frame
from ppy.wire.lines import LineDecoder, encode_line
from ppy.wire.model import Call

pytestmark = pytest.mark.fast

# Modest, so the whole suite stays fast; no deadline (CI machines stall).
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Decoder = LegacyDecoder | LineDecoder
Outcome = tuple[list[bytes], int | None]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def decode_stream(decoder: Decoder, chunks: list[bytes], limit: int) -> Outcome:
    """Messages, then the error code of the first ProtocolError (None if none); nothing else may escape."""
    messages: list[bytes] = []
    try:
        for chunk in chunks:
            messages += decoder.feed(chunk)
            # Memory held stays bounded by the limit plus what one read brought.
            assert decoder.pending <= limit + HEADER_SIZE + 1 + len(chunk)
        decoder.feed_eof()
    except ProtocolError as exc:
        assert exc.error.code in (-32700, -32600)
        assert exc.error.message
        return messages, exc.error.code
    return messages, None


# Streams that are mostly garbage, or frames/lines with garbage mixed in, so both
# the happy paths and every error path are reached.
def legacy_streams() -> st.SearchStrategy[bytes]:
    frame = st.binary(max_size=40).map(encode_frame)
    header_like = st.text("0123456789.-e ", min_size=1, max_size=12).map(lambda s: s.encode())
    parts = st.lists(st.one_of(frame, frame, header_like, st.binary(max_size=20)), max_size=5)
    return st.one_of(st.binary(max_size=120), parts.map(b"".join))


def lines_streams() -> st.SearchStrategy[bytes]:
    short = st.text("ab {}[]\r\t", max_size=12).map(str.encode)
    line = st.one_of(short, st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")))
    ending = st.sampled_from([b"\n", b"\r\n", b"", b"\r"])
    parts = st.lists(st.tuples(line, ending).map(b"".join), max_size=6)
    return st.one_of(st.binary(max_size=120), parts.map(b"".join))


CUTS = st.lists(st.integers(min_value=0, max_value=200), max_size=8)
LIMIT = st.one_of(st.integers(min_value=0, max_value=8), st.integers(min_value=0, max_value=64))


@PROPS
@given(data=legacy_streams(), cuts=CUTS, limit=LIMIT)
def test_legacy_any_bytes_give_messages_or_protocol_error_however_split(
        data: bytes, cuts: list[int], limit: int) -> None:
    whole = decode_stream(LegacyDecoder(limit), [data], limit)
    assert decode_stream(LegacyDecoder(limit), split(data, cuts), limit) == whole
    assert decode_stream(LegacyDecoder(limit), split(data, list(range(len(data)))), limit) == whole
    assert all(len(m) <= limit for m in whole[0])


@PROPS
@given(data=lines_streams(), cuts=CUTS, limit=LIMIT)
def test_lines_any_bytes_give_messages_or_protocol_error_however_split(
        data: bytes, cuts: list[int], limit: int) -> None:
    whole = decode_stream(LineDecoder(limit), [data], limit)
    assert decode_stream(LineDecoder(limit), split(data, cuts), limit) == whole
    assert decode_stream(LineDecoder(limit), split(data, list(range(len(data)))), limit) == whole
    assert all(len(m) <= limit and b"\n" not in m and m.strip() for m in whole[0])


@PROPS
@given(payloads=st.lists(st.binary(max_size=300), max_size=6), cuts=CUTS)
def test_legacy_round_trip(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = LegacyDecoder(300)
    assert decode_stream(decoder, split(stream, cuts), 300) == (payloads, None)
    assert decoder.pending == 0


# A line is any bytes without '\n', not blank, not ending in the '\r' of a '\r\n'.
LINE = st.binary(min_size=1, max_size=200).map(lambda b: b.replace(b"\n", b"").rstrip(b"\r")).filter(
    lambda b: bool(b.strip()))


@PROPS
@given(lines=st.lists(LINE, max_size=6), cuts=CUTS, crlf=st.booleans())
def test_lines_round_trip(lines: list[bytes], cuts: list[int], crlf: bool) -> None:
    stream = b"".join(encode_line(m) for m in lines)
    if crlf:
        stream = stream.replace(b"\n", b"\r\n")
    assert decode_stream(LineDecoder(200), split(stream, cuts), 200) == (lines, None)


# -- JSON-RPC ----------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=20))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)


def check_items(items: list[jsonrpc.Item], batch: bool) -> None:
    assert items and (batch or len(items) == 1)
    for item in items:
        if isinstance(item, jsonrpc.Rejected):
            assert item.error.code in (-32700, -32600) and item.error.message
        else:
            assert isinstance(item, Call) and isinstance(item.method, str) and item.method
            assert isinstance(item.params, (list, dict))


@PROPS
@given(data=st.binary(max_size=200))
def test_jsonrpc_parse_never_raises_on_any_bytes(data: bytes) -> None:
    check_items(*jsonrpc.parse(data))


@PROPS
@given(doc=JSON, garbage=st.binary(max_size=3), at=st.integers(min_value=0))
def test_jsonrpc_parse_never_raises_on_json_or_broken_json(doc: Any, garbage: bytes, at: int) -> None:
    text = json.dumps(doc).encode()
    check_items(*jsonrpc.parse(text, max_depth=8, max_batch=3))
    at %= len(text) + 1
    check_items(*jsonrpc.parse(text[:at] + garbage + text[at:], max_depth=8, max_batch=3))


REQUEST_MEMBER = st.fixed_dictionaries({
    "jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2]),
    "method": st.one_of(st.text(min_size=1, max_size=10), st.integers()),
}, optional={"params": JSON, "id": JSON, "timeout": JSON, "x": JSON})


@PROPS
@given(request=st.one_of(REQUEST_MEMBER, st.lists(REQUEST_MEMBER, max_size=4)))
def test_jsonrpc_parse_never_raises_on_request_shaped_json(request: Any) -> None:
    check_items(*jsonrpc.parse(json.dumps(request).encode(), max_batch=3))


IDS = st.one_of(st.none(), st.integers(), st.text(max_size=10), st.floats(allow_nan=False, allow_infinity=False))


@PROPS
@given(method=st.text(min_size=1, max_size=20), params=st.one_of(st.lists(JSON, max_size=4),
       st.dictionaries(st.text(max_size=8), JSON, max_size=4)), rid=IDS, notify=st.booleans(),
       timeout=st.one_of(st.none(), st.floats(min_value=0.001, max_value=1e6)))
def test_jsonrpc_request_round_trip(method: str, params: Any, rid: Any, notify: bool, timeout: float | None) -> None:
    line = jsonrpc.encode_request(method, params, rid, notify=notify, timeout=timeout)
    items, batch = jsonrpc.parse(line)
    expected = Call(method, params, None if notify else rid, notify, timeout)
    assert (items, batch) == ([expected], False)
    assert type(items[0].id) is type(expected.id)  # type: ignore[union-attr]


@PROPS
@given(rid=IDS, result=JSON)
def test_jsonrpc_response_round_trip(rid: Any, result: Any) -> None:
    reply = json.loads(jsonrpc.encode_result(rid, jsonvalue.encode(result)))
    assert reply == {"jsonrpc": "2.0", "id": rid, "result": result}


# -- nesting depth -----------------------------------------------------------------------------


@pytest.mark.parametrize("open_, close", [("[", "]"), ('{"a":', "}"), ('[{"a":', "}]")])
def test_nesting_100000_deep_is_invalid_request_not_recursion_error(open_: str, close: str) -> None:
    deep = (open_ * 100_000 + "1" + close * 100_000).encode()
    limit = sys.getrecursionlimit()
    with pytest.raises(InvalidRequest, match="deeper than 64"):
        jsonvalue.decode(deep, 64)
    (item,), batch = jsonrpc.parse(deep)
    assert isinstance(item, jsonrpc.Rejected) and item.error.code == -32600 and not batch
    request = b'{"jsonrpc":"2.0","method":"m","params":[' + deep + b'],"id":1}'
    (item,), _ = jsonrpc.parse(request)
    assert isinstance(item, jsonrpc.Rejected) and item.error.code == -32600
    assert sys.getrecursionlimit() == limit


@PROPS
@given(depth=st.integers(min_value=1, max_value=80), limit=st.integers(min_value=1, max_value=70))
def test_depth_limit_is_exact(depth: int, limit: int) -> None:
    text = ("[" * depth + "]" * depth).encode()
    if depth > limit:
        with pytest.raises(InvalidRequest):
            jsonvalue.decode(text, limit)
    else:
        assert jsonvalue.decode(text, limit) == json.loads(text)


# Nested arrays/objects, some of them wide (past the walk budget of nests_too_deep, which then counts).
NESTED = st.recursive(
    st.integers(0, 9) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    | st.lists(st.integers(0, 9), min_size=250, max_size=300).map(lambda wide: [wide, [wide]]),
    max_leaves=40)


@PROPS
@given(value=NESTED, limit=st.integers(min_value=1, max_value=12))
def test_the_cheap_nesting_check_agrees_with_the_full_walk(value: Any, limit: int) -> None:
    """nests_too_deep (short text, bounded walk, then a bracket count) against the unbounded walk, and the
    request fast path against the decode of the same document to dicts."""
    text = json.dumps(value).encode()
    assert jsonvalue.nests_too_deep(value, text, limit) is bool(jsonvalue.depth_exceeds(value, limit))
    line = json.dumps({"jsonrpc": "2.0", "method": "m", "params": [value], "id": 1}).encode()
    (item,), _ = jsonrpc.parse(line, max_depth=limit + 2)
    too_deep = bool(jsonvalue.depth_exceeds(value, limit))
    assert isinstance(item, jsonrpc.Rejected) is too_deep, (item, limit)


# -- result encoding ---------------------------------------------------------------------------

ENCODERS: list[tuple[str, Callable[[Any], Any]]] = [
    ("lines", lambda v: json.loads(jsonvalue.encode(v))),
    ("legacy", lambda v: json.loads(jsonvalue.encode_legacy(v))["data"]),
]


@dataclasses.dataclass
class Point:
    x: float
    label: str
    tags: tuple[str, ...] = ()


class Color(enum.Enum):
    RED = "red"
    GREEN = 2


class Weird(enum.Enum):
    NAN = math.nan


NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


@PROPS
@given(bad=NON_FINITE, wrap=st.sampled_from([
    lambda x: x, lambda x: [1, x], lambda x: (x,), lambda x: {"a": {"b": [x]}}, lambda x: {x},
    lambda x: frozenset([x]), lambda x: Point(x, "p"), lambda x: [Point(1.0, "q"), {"k": Point(x, "r")}],
]))
def test_nan_and_infinity_results_are_internal_errors(bad: float, wrap: Callable[[float], Any]) -> None:
    value = wrap(bad)
    with pytest.raises(InternalError, match="NaN or Infinity"):
        jsonvalue.encode(value)
    with pytest.raises(InternalError, match="NaN or Infinity"):
        jsonvalue.encode_legacy(value)


def test_nan_enum_value_is_an_internal_error() -> None:
    for encode in (jsonvalue.encode, jsonvalue.encode_legacy):
        with pytest.raises(InternalError, match="NaN or Infinity"):
            encode([Weird.NAN])


def test_null_results_are_not_mistaken_for_nan() -> None:
    assert jsonvalue.encode([None, "null", Point(0.5, "null")]) == b'[null,"null",{"x":0.5,"label":"null","tags":[]}]'


def expected_builtins(value: Any) -> Any:
    """docs/app-folder.md, spelled out independently of msgspec: what each extra type becomes in JSON."""
    if isinstance(value, enum.Enum):
        return expected_builtins(value.value)
    if isinstance(value, (tuple, list, set, frozenset)):
        return [expected_builtins(v) for v in value]  # a set keeps its (arbitrary) iteration order
    if isinstance(value, dict):
        return {k: expected_builtins(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: expected_builtins(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return ("iso", type(value), value)
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def same(got: Any, want: Any) -> bool:
    if isinstance(want, tuple) and want[:1] == ("iso",):
        _, kind, original = want
        # ISO 8601 text that reads back as the same instant/date/time.
        return isinstance(got, str) and kind.fromisoformat(got) == original
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    return bool(got == want and type(got) is type(want))


TZ = st.one_of(st.none(), st.just(dt.UTC), st.integers(-14 * 60, 14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))))
EXTRA = st.one_of(
    st.tuples(st.integers(), st.text(max_size=5)),
    st.sets(st.integers(), max_size=4),
    st.frozensets(st.text(max_size=4), max_size=4),
    st.datetimes(timezones=TZ),
    st.dates(),
    st.times(),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.uuids(),
    st.sampled_from(Color),
    st.builds(Point, st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
              st.lists(st.text(max_size=3), max_size=2).map(tuple)),
    st.binary(max_size=20),
)
RESULTS = st.recursive(st.one_of(EXTRA, JSON_SCALARS), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3),
    st.tuples(inner, inner)), max_leaves=8)


@PROPS
@given(value=RESULTS)
def test_spec_types_encode_as_spec_1_says_in_both_encoders(value: Any) -> None:
    want = expected_builtins(value)
    got = {name: decode(value) for name, decode in ENCODERS}
    for name in got:
        assert same(got[name], want), name
    assert got["lines"] == got["legacy"]  # one result, the same JSON in every dialect


@PROPS
@given(value=JSON)
def test_legacy_success_is_byte_identical_to_the_seed(value: Any) -> None:
    assert jsonvalue.encode_legacy(value) == json.dumps({"data": value, "error": ""}).encode("ascii")
    assert json.loads(jsonvalue.encode(value)) == value


@pytest.mark.parametrize("value", [object(), [1, {"a": complex(1, 2)}], {(1, 2): "tuple key"}, dt.UTC])
def test_unencodable_results_are_internal_errors_naming_the_type(value: Any) -> None:
    for encode in (jsonvalue.encode, jsonvalue.encode_legacy):
        with pytest.raises(InternalError, match="not JSON-encodable") as info:
            encode(value)
        assert type(value).__name__ in info.value.message


def test_deeply_nested_result_is_an_internal_error_not_recursion_error() -> None:
    value: Any = None
    for _ in range(100_000):
        value = [value]
    for encode in (jsonvalue.encode, jsonvalue.encode_legacy):
        with pytest.raises(InternalError):
            encode(value)


def test_lone_surrogate_result() -> None:
    """Not UTF-8-encodable for the lines dialect (InternalError); json.dumps escapes it, as the seed did."""
    with pytest.raises(InternalError):
        jsonvalue.encode(["\ud800"])
    assert jsonvalue.encode_legacy("\ud800") == b'{"data": "\\ud800", "error": ""}'


@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=20),
       st.integers(min_value=1, max_value=5))
def test_lines_returned_a_few_at_a_time_are_the_same_lines(parts: list[bytes], limit: int) -> None:
    """Flow control asks for a few lines at a time; the rest stay undecoded, and nothing changes."""
    data = b"".join(p + b"\n" for p in parts) + b"tail"
    whole = LineDecoder(100).feed(data)
    decoder = LineDecoder(100)
    got = decoder.feed(data, limit)
    while decoder.ready:
        more = decoder.feed(b"", limit)
        assert len(more) <= limit
        got += more
    assert got == whole
    assert decoder.pending == 4  # b"tail", still waiting for its newline


@given(st.lists(st.sampled_from([b"", b" ", b"\t", b"\x0b\x0c", b"{}", b' {"a": 1} ', b"[1]", b"x\r", b"\r"]),
                max_size=40), st.sampled_from([None, 3, 64]))
def test_a_burst_read_at_once_gives_the_lines_read_byte_by_byte(parts: list[bytes], limit: int | None) -> None:
    """A read of whole lines is split in C (the pipelined fast path): blank lines, b'\\r' and the limit
    must come out exactly as from the line-by-line scan."""
    data = b"".join(p + b"\n" for p in parts)
    fast = LineDecoder(100)
    got = fast.feed(data, limit)
    while fast.ready:
        got += fast.feed(b"", limit)
    slow = LineDecoder(100)
    want: list[bytes] = []
    for i in range(len(data)):
        want += slow.feed(data[i:i + 1], limit)
        while slow.ready:
            want += slow.feed(b"", limit)
    assert got == want == [p.rstrip(b"\r") for p in parts if p.rstrip(b"\r").strip()]
    assert fast.pending == slow.pending == 0
