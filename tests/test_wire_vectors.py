"""The shared byte vectors (tests/vectors/*.json) against the sans-I/O codecs.

Every decoding vector is fed three ways, as h11's tests/test_io.py does:
whole, one byte at a time, and with trailing bytes after it; plus in the
chunks the vector names.  The outcome (messages, then maybe one ProtocolError
with its code) must not depend on how the bytes were split.  The PHP client's
PHPUnit tests read the same files (format: tests/vectors/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ppy.errors import ERROR_BY_CODE, MethodNotFound, ProtocolError
from ppy.wire import jsonrpc, jsonvalue
from ppy.wire.legacy import HEADER_SIZE, LegacyDecoder, encode_frame
from ppy.wire.lines import LineDecoder, encode_line
from ppy.wire.model import Call
from ppy.wire.sniff import Verdict, sniff

pytestmark = pytest.mark.fast

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / name).read_text(encoding="utf-8"))["vectors"]
    return vectors


def as_bytes(value: dict[str, str]) -> bytes:
    """A vector's byte string: {"text": UTF-8 text} or {"hex": lowercase hex}."""
    (kind, data), = value.items()
    return data.encode("utf-8") if kind == "text" else bytes.fromhex(data)


def by_name(vectors: list[dict[str, Any]]) -> Any:
    return pytest.mark.parametrize("vector", vectors, ids=[v["name"] for v in vectors])


Decoder = LegacyDecoder | LineDecoder


@dataclass
class Outcome:
    messages: list[bytes]
    code: int | None = None
    fatal: bool | None = None
    pending: int | None = None


def run(decoder: Decoder, chunks: Iterable[bytes], eof: bool) -> Outcome:
    """Feed ``chunks`` (then EOF); stop at the first ProtocolError, as a server does."""
    out = Outcome([])
    try:
        for chunk in chunks:
            out.messages += decoder.feed(chunk)
        if eof:
            decoder.feed_eof()
    except ProtocolError as exc:
        out.code, out.fatal = exc.error.code, exc.fatal
        assert exc.error.message, "a protocol error must say what was wrong"
    else:
        out.pending = decoder.pending
    return out


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def expected(vector: dict[str, Any]) -> Outcome:
    error = vector["error"]
    return Outcome([as_bytes(m) for m in vector["messages"]],
                   error and error["code"], error and error["fatal"], vector.get("pending"))


def check_three_ways(make: Callable[[], Decoder], vector: dict[str, Any], trailing: bytes) -> None:
    chunks = [as_bytes(c) for c in vector["input"]]
    whole = b"".join(chunks)
    want = expected(vector)
    for how, feed in (("chunks", chunks), ("whole", [whole]), ("byte-by-byte", one_byte_at_a_time(whole))):
        got = run(make(), feed, vector["eof"])
        if want.pending is None:
            got.pending = None  # only pinned where the vector says
        assert got == want, how
    if vector["eof"] or want.pending:
        return  # trailing bytes only make sense at a message boundary (EOF would cut them off)
    got = run(make(), [whole + trailing], eof=False)
    assert (got.messages, got.code, got.fatal) == (want.messages, want.code, want.fatal), "with trailing bytes"
    if want.code is None:
        assert got.pending == want.pending + len(trailing)


# -- legacy frames ---------------------------------------------------------------------

LEGACY_FRAMES = load("legacy_frames.json")


@by_name(LEGACY_FRAMES)
def test_legacy_frames(vector: dict[str, Any]) -> None:
    # Trailing bytes: the start of a next frame's header, which must wait in the buffer.
    check_three_ways(lambda: LegacyDecoder(vector["max_frame_bytes"]), vector, trailing=b"12.0000")


def test_legacy_vectors_cover_the_brief() -> None:
    names = {v["name"] for v in LEGACY_FRAMES}
    for required in ("seed-php-hello", "unicode-raw-utf8", "split-header", "bad-header-letters",
                     "bad-header-negative", "bad-header-exponent", "over-default-limit", "exact-limit",
                     "over-limit-by-one", "truncated-payload-at-eof"):
        assert required in names
    seed = next(v for v in LEGACY_FRAMES if v["name"] == "seed-php-hello")
    assert as_bytes(seed["input"][0]).startswith(b"39.00000000{")


@by_name([v for v in LEGACY_FRAMES if v["error"] is None and v["messages"]])
def test_legacy_round_trip_through_encode_frame(vector: dict[str, Any]) -> None:
    """What the decoder reads, encode_frame writes back in the seed's canonical header form."""
    payloads = [as_bytes(m) for m in vector["messages"]]
    stream = b"".join(encode_frame(p) for p in payloads)
    assert run(LegacyDecoder(vector["max_frame_bytes"]), [stream], eof=True).messages == payloads
    for payload in payloads:
        header = encode_frame(payload)[:HEADER_SIZE]
        assert header == (str(len(payload)) + ".").ljust(HEADER_SIZE, "0").encode("ascii")


# -- legacy replies ----------------------------------------------------------------------

LEGACY_REPLIES = load("legacy_replies.json")


@by_name(LEGACY_REPLIES)
def test_legacy_reply_bytes(vector: dict[str, Any]) -> None:
    if "result" in vector:
        body = jsonvalue.encode_legacy(vector["result"])
        # docs/protocol.md, section 2: byte-identical to the seed's json.dumps with default separators and ensure_ascii.
        assert body == json.dumps({"data": vector["result"], "error": ""}).encode("ascii")
    else:
        body = jsonvalue.encode_legacy_error(vector["error"])
        assert json.loads(body) == {"data": [], "error": vector["error"]}
    assert encode_frame(body) == as_bytes(vector["bytes"])
    # ...and the reply reads back through the same decoder a client would use.
    assert LegacyDecoder(1 << 24).feed(as_bytes(vector["bytes"])) == [body]


# -- lines ---------------------------------------------------------------------------

LINES_FRAMES = load("lines_frames.json")


@by_name(LINES_FRAMES)
def test_lines_frames(vector: dict[str, Any]) -> None:
    # Trailing bytes: the start of a next request, which must wait for its newline.
    check_three_ways(lambda: LineDecoder(vector["max_frame_bytes"]), vector, trailing=b'{"jsonrpc":"2.0"')


@by_name([v for v in LINES_FRAMES if v["error"] is None and v["messages"]])
def test_lines_round_trip_through_encode_line(vector: dict[str, Any]) -> None:
    messages = [as_bytes(m) for m in vector["messages"]]
    stream = b"".join(encode_line(m) for m in messages)
    assert run(LineDecoder(vector["max_frame_bytes"]), [stream], eof=True).messages == messages


def test_lines_error_is_raised_once_then_the_decoder_goes_on() -> None:
    """After a deferred too-long error the decoder is usable again (the server closes anyway)."""
    decoder = LineDecoder(8)
    assert decoder.feed(b"ok\n" + b"x" * 20 + b"\n") == [b"ok"]
    assert decoder.pending > 0  # an answer is still owed: the server must not go idle
    with pytest.raises(ProtocolError) as info:
        decoder.feed(b"")
    assert info.value.fatal and info.value.error.code == -32600
    assert decoder.pending == 0
    assert decoder.feed(b"again\n") == [b"again"]


# -- JSON-RPC requests -------------------------------------------------------------------

JSONRPC_REQUESTS = load("jsonrpc_requests.json")


def expected_items(vector: dict[str, Any]) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for item in vector["items"]:
        if "call" in item:
            c = item["call"]
            items.append(("call", Call(c["method"], c["params"], c["id"], c["notify"], c["timeout"])))
        else:
            items.append(("rejected", (item["rejected"]["code"], item["rejected"]["id"])))
    return items


def actual_items(items: list[jsonrpc.Item]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for item in items:
        if isinstance(item, Call):
            out.append(("call", item))
        else:
            assert isinstance(item, jsonrpc.Rejected)
            assert item.error.message
            out.append(("rejected", (item.error.code, item.id)))
    return out


def ids_of(items: list[tuple[str, Any]]) -> list[type]:
    """The JSON type of every id: 1 and 1.0 are equal in Python but not on the wire."""
    return [type(v.id if kind == "call" else v[1]) for kind, v in items]


def parse_vector(vector: dict[str, Any], data: bytes) -> tuple[list[jsonrpc.Item], bool]:
    return jsonrpc.parse(data, max_depth=vector.get("max_depth", 64), max_batch=vector.get("max_batch", 100))


@by_name(JSONRPC_REQUESTS)
def test_jsonrpc_parse(vector: dict[str, Any]) -> None:
    line = as_bytes(vector["input"])
    items, batch = parse_vector(vector, line)
    assert batch is vector["batch"]
    want = expected_items(vector)
    assert actual_items(items) == want
    assert ids_of(actual_items(items)) == ids_of(want)


@by_name(JSONRPC_REQUESTS)
def test_jsonrpc_parse_through_the_line_decoder(vector: dict[str, Any]) -> None:
    """The same lines framed and fed three ways give the same items."""
    line = as_bytes(vector["input"])
    stream = encode_line(line)
    want = expected_items(vector)
    for feed in ([stream], one_byte_at_a_time(stream), [stream + b'{"jsonrpc"']):
        decoder = LineDecoder(1 << 24)
        lines = [m for chunk in feed for m in decoder.feed(chunk)]
        assert len(lines) == 1
        assert actual_items(parse_vector(vector, lines[0])[0]) == want


# The methods the JSON-RPC specification's examples assume.
def _subtract(params: Any) -> Any:
    if isinstance(params, dict):
        return params["minuend"] - params["subtrahend"]
    return params[0] - params[1]


EXAMPLE_METHODS: dict[str, Callable[[Any], Any]] = {
    "subtract": _subtract,
    "sum": lambda params: sum(params),
    "get_data": lambda params: ["hello", 5],
    "update": lambda params: None,
    "notify_hello": lambda params: None,
    "notify_sum": lambda params: None,
}


def spec_server(line: bytes) -> bytes | None:
    """What a server does with a parsed line: reply per request, none for notifications.

    It uses only the wire encoders, so comparing with the specification's
    replies checks ids, codes, batch shape and the no-reply rules end to end.
    """
    items, batch = jsonrpc.parse(line)
    replies: list[bytes] = []
    for item in items:
        if isinstance(item, jsonrpc.Rejected):
            replies.append(jsonrpc.encode_error(item.id, item.error))
            continue
        fn = EXAMPLE_METHODS.get(item.method)
        if item.notify:
            continue
        if fn is None:
            replies.append(jsonrpc.encode_error(item.id, MethodNotFound(f"no method {item.method!r}")))
        else:
            replies.append(jsonrpc.encode_result(item.id, jsonvalue.encode(fn(item.params))))
    if not replies:
        return None
    return jsonrpc.encode_batch(replies) if batch else replies[0]


def without_messages(reply: Any) -> Any:
    if isinstance(reply, list):
        return [without_messages(r) for r in reply]
    reply = dict(reply)
    if "error" in reply:
        reply["error"] = {k: v for k, v in reply["error"].items() if k != "message"}
    return reply


@by_name([v for v in JSONRPC_REQUESTS if "spec_reply" in v])
def test_jsonrpc_spec_examples_reply_as_the_specification_says(vector: dict[str, Any]) -> None:
    reply = spec_server(as_bytes(vector["input"]))
    if vector["spec_reply"] == []:
        assert reply is None  # notifications and all-notification batches: nothing at all
        return
    assert reply is not None
    assert without_messages(json.loads(reply)) == without_messages(vector["spec_reply"])


def test_jsonrpc_vectors_cover_every_specification_example() -> None:
    spec = {v["name"] for v in JSONRPC_REQUESTS if v["name"].startswith("spec-")}
    assert spec == {
        "spec-positional-1", "spec-positional-2", "spec-named-1", "spec-named-2", "spec-notification-1",
        "spec-notification-2", "spec-method-not-found", "spec-invalid-json", "spec-invalid-request",
        "spec-batch-invalid-json", "spec-empty-array", "spec-invalid-batch-1", "spec-invalid-batch-3",
        "spec-batch", "spec-batch-all-notifications",
    }


# -- JSON-RPC encoding ---------------------------------------------------------------------

JSONRPC_ENCODING = load("jsonrpc_encoding.json")


def encode_reply(spec: dict[str, Any]) -> bytes:
    if "result" in spec:
        return jsonrpc.encode_result(spec["id"], jsonvalue.encode(spec["result"]))
    error = spec["error"]
    return jsonrpc.encode_error(spec["id"], ERROR_BY_CODE[error["code"]](error["message"], error.get("data")))


@by_name(JSONRPC_ENCODING)
def test_jsonrpc_encoding(vector: dict[str, Any]) -> None:
    if "request" in vector:
        r = vector["request"]
        got = jsonrpc.encode_request(r["method"], r["params"], r.get("id"), notify=r.get("notify", False),
                                     timeout=r.get("timeout"))
        # A request ppy's client writes is one ppy's server reads back unchanged.
        (call,), _ = jsonrpc.parse(got)
        assert call == Call(r["method"], r["params"], r.get("id"), r.get("notify", False), r.get("timeout"))
    elif "batch" in vector:
        got = jsonrpc.encode_batch([encode_reply(member) for member in vector["batch"]])
    else:
        got = encode_reply(vector)
    assert got == as_bytes(vector["bytes"])
    assert b"\n" not in got  # one reply, one line


# -- sniffing ----------------------------------------------------------------------------------

SNIFF = load("sniff.json")


@by_name(SNIFF)
def test_sniff(vector: dict[str, Any]) -> None:
    assert sniff(as_bytes(vector["prefix"])) is Verdict(vector["verdict"])


# -- the vector files themselves -----------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.json")), ids=lambda p: p.name)
def test_vector_files_are_simple_for_other_languages(path: Path) -> None:
    """Plain JSON with an about/format header and uniquely named vectors, every byte string one-keyed."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert set(doc) == {"about", "format", "vectors"}
    names = [v["name"] for v in doc["vectors"]]
    assert len(names) == len(set(names)) and all(names)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) in ({"text"}, {"hex"}):
                (value,) = node.values()
                assert isinstance(value, str)
                if "hex" in node:
                    assert value == value.lower() and len(value) % 2 == 0
                    with pytest.raises(UnicodeDecodeError):  # hex only for bytes text cannot carry
                        bytes.fromhex(value).decode("utf-8")
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(doc["vectors"])
