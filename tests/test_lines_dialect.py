"""docs/protocol.md, section 3 end to end: JSON-RPC 2.0 over newline-delimited JSON on a real server.

Pipelining, out-of-order replies, notifications, batches, ids, the built-in
``rpc.*`` methods, parse errors that leave the connection usable, and the
``"timeout"`` member.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import APPS, Server, recv_line

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(APPS / "semantics", "--timeout", "5")
    yield srv
    srv.stop()


class Conn:
    """One persistent lines-dialect connection that reads whole reply lines."""

    def __init__(self, server: Server) -> None:
        self.sock = server.connect()
        self.buf = b""

    def send(self, *objs: Any) -> None:
        self.sock.sendall(b"".join(json.dumps(o).encode() + b"\n" for o in objs))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self, timeout: float = 10.0) -> Any:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"closed after {self.buf!r}")
            self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\n")
        return json.loads(raw)

    def nothing_within(self, seconds: float) -> bool:
        """True when no reply bytes arrive within ``seconds``."""
        if self.buf:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            return True
        self.buf += chunk
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conn(server: Server) -> Iterator[Conn]:
    c = Conn(server)
    yield c
    c.close()


def req(method: str, params: Any = None, rid: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": [] if params is None else params, "id": rid, **extra}


def note(method: str, params: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": [] if params is None else params}


def ping_is_next(conn: Conn, rid: str = "ping") -> None:
    """Send rpc.ping and check its reply is the very next line (nothing else was owed)."""
    conn.send(req("rpc.ping", rid=rid))
    assert conn.line() == {"jsonrpc": "2.0", "id": rid, "result": "pong"}


def wait_count(conn: Conn, key: str, want: int) -> int:
    """Poll state.count until it reaches ``want`` (bounded: 100 tries, ~2 s)."""
    got = -1
    for i in range(100):
        conn.send(req("state.count", [key], rid=f"count{i}"))
        got = conn.line()["result"]
        if got >= want:
            return int(got)
        time.sleep(0.02)
    return int(got)


# -- pipelining and ordering ---------------------------------------------------------------------

def test_pipelined_requests_on_one_connection(conn: Conn) -> None:
    n = 200
    conn.send(*[req("aio.double" if i % 2 else "params.to_int", [str(i)], rid=i) for i in range(n)])
    replies = [conn.line() for _ in range(n)]
    by_id = {r["id"]: r for r in replies}
    assert sorted(by_id) == list(range(n))
    for i in range(n):
        assert by_id[i]["result"] == (2 * i if i % 2 else ["int", i])


def test_slow_call_first_fast_reply_first(conn: Conn) -> None:
    conn.send(req("slow.sleep", [700], rid="slow"), req("params.to_int", ["1"], rid="fast"))
    first, second = conn.line(), conn.line()
    assert first == {"jsonrpc": "2.0", "id": "fast", "result": ["int", 1]}
    assert second == {"jsonrpc": "2.0", "id": "slow", "result": 700}


def test_slow_async_call_first_fast_reply_first(conn: Conn) -> None:
    conn.send(req("slow.asleep", [700], rid=1), req("rpc.ping", rid=2), req("aio.double", [4], rid=3))
    replies = [conn.line() for _ in range(3)]
    assert [r["id"] for r in replies][-1] == 1
    assert {r["id"]: r["result"] for r in replies} == {1: 700, 2: "pong", 3: 8}


# -- notifications -------------------------------------------------------------------------------

def test_notification_runs_and_gets_no_reply(conn: Conn) -> None:
    conn.send(note("state.bump", ["note-a"]), note("state.bump", ["note-a"]))
    ping_is_next(conn)  # no reply line was sent for the two notifications
    assert wait_count(conn, "note-a", 2) == 2


def test_failing_notifications_get_no_reply_either(conn: Conn) -> None:
    conn.send(note("errors.declined", [1]), note("no.such"), note("params.to_int", ["x"]), note("results.opaque"))
    ping_is_next(conn)
    assert conn.nothing_within(0.2)


# -- batches -------------------------------------------------------------------------------------

def test_batch_with_calls_notifications_and_errors(conn: Conn) -> None:
    conn.send([req("aio.double", [1], rid="a"), note("state.bump", ["batch"]), req("no.such", rid="b"),
               {"jsonrpc": "2.0", "id": "c"}, 5, req("params.to_int", ["x"], rid="d")])
    replies = conn.line()
    assert isinstance(replies, list)
    by_id = {r["id"]: r for r in replies if r["id"] is not None}
    assert by_id["a"]["result"] == 2
    assert by_id["b"]["error"]["code"] == -32601
    assert by_id["c"]["error"]["code"] == -32600
    assert by_id["d"]["error"]["code"] == -32602
    nulls = [r for r in replies if r["id"] is None]
    assert len(nulls) == 1 and nulls[0]["error"]["code"] == -32600  # the bare 5
    assert len(replies) == 5  # nothing for the notification
    assert wait_count(conn, "batch", 1) == 1


def test_notification_only_batch_gets_no_reply_line(conn: Conn) -> None:
    conn.send([note("state.bump", ["nb"]), note("state.bump", ["nb"]), note("state.bump", ["nb"])])
    ping_is_next(conn)
    assert wait_count(conn, "nb", 3) == 3


def test_empty_batch_is_an_invalid_request(conn: Conn) -> None:
    conn.send([])
    reply = conn.line()
    assert reply["id"] is None and reply["error"]["code"] == -32600
    ping_is_next(conn)


def test_batch_replies_pair_ids_even_when_members_finish_out_of_order(conn: Conn) -> None:
    conn.send([req("slow.asleep", [300], rid=1), req("aio.double", [5], rid=2)])
    replies = conn.line()
    assert {r["id"]: r["result"] for r in replies} == {1: 300, 2: 10}


# -- ids -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rid", ["abc", "", 42, 0, -1, 2**53, 1.5, None])
def test_ids_are_echoed_exactly(conn: Conn, rid: Any) -> None:
    conn.send(req("aio.double", [3], rid=rid))
    assert conn.line() == {"jsonrpc": "2.0", "id": rid, "result": 6}


@pytest.mark.parametrize("rid", [[1], {"a": 1}, True])
def test_bad_ids_are_invalid_requests(conn: Conn, rid: Any) -> None:
    conn.send(req("aio.double", [3], rid=rid))
    reply = conn.line()
    assert reply["error"]["code"] == -32600 and reply["id"] is None
    ping_is_next(conn)


def test_reply_lines_are_compact_json_rpc(conn: Conn) -> None:
    conn.send(req("params.to_str", ["é"], rid=9))
    conn.sock.settimeout(5)
    raw = b""
    while not raw.endswith(b"\n"):
        raw += conn.sock.recv(4096)
    assert raw == '{"jsonrpc":"2.0","id":9,"result":["str","é"]}\n'.encode()


# -- built-in methods ----------------------------------------------------------------------------

def test_rpc_ping(conn: Conn) -> None:
    conn.send(req("rpc.ping", rid="p"))
    assert conn.line() == {"jsonrpc": "2.0", "id": "p", "result": "pong"}


def test_unknown_rpc_method_is_not_found(conn: Conn) -> None:
    conn.send(req("rpc.nope", rid=1))
    assert conn.line()["error"]["code"] == -32601


def test_rpc_discover_is_an_openrpc_document(conn: Conn) -> None:
    conn.send(req("rpc.discover", rid="d"))
    doc = conn.line()["result"]
    assert re.fullmatch(r"1\.\d+\.\d+", doc["openrpc"])
    assert isinstance(doc["info"]["title"], str) and doc["info"]["title"]
    assert isinstance(doc["info"]["version"], str) and doc["info"]["version"]
    methods = {m["name"]: m for m in doc["methods"]}
    assert len(methods) == len(doc["methods"])  # names are unique, as OpenRPC requires
    for m in doc["methods"]:
        assert isinstance(m["params"], list)
        for p in m["params"]:
            assert isinstance(p["name"], str) and isinstance(p["schema"], dict)
        assert isinstance(m["result"]["name"], str) and isinstance(m["result"]["schema"], dict)
        json.dumps(m)

    defaults = methods["params.defaults"]
    assert defaults["summary"] == "Greet ``name`` several times."
    assert "The rest of the docstring is the description." in defaults["description"]
    assert defaults["params"] == [
        {"name": "name", "required": False, "schema": {"type": "string", "default": "world"},
         "x-python-type": "str"},
        {"name": "times", "required": False, "schema": {"type": "integer", "default": 1},
         "x-python-type": "int"},
        {"name": "sep", "required": False, "schema": {"type": "string", "default": " "},
         "x-python-type": "str"},
    ]
    assert defaults["result"]["schema"] == {"type": "string"}
    assert defaults["x-signature"] == "defaults(name: str = 'world', times: int = 1, sep: str = ' ') -> str"

    ints = methods["params.ints"]["params"][0]
    assert ints["required"] is True
    assert ints["schema"] == {"type": "array", "items": {"type": "integer"}}
    maybe = methods["params.maybe"]["params"][0]
    assert {"type": "integer"} in maybe["schema"]["anyOf"] and {"type": "null"} in maybe["schema"]["anyOf"]
    point = methods["params.point"]["params"][0]["schema"]
    assert point["required"] == ["x"] and "$defs" not in point  # written in place: OpenRPC tools read draft-07
    total = methods["billing.invoice.total"]
    assert total["summary"] == "Sum the amounts and add tax."
    assert total["result"]["schema"] == {"type": "number"}
    assert methods["aio.double"]["x-async"] is True
    assert methods["params.raw"]["params"][0]["schema"] == {}  # unannotated: any JSON value
    kinds = {p["name"]: p.get("x-kind") for p in methods["params.raw"]["params"]}
    assert kinds == {"a": None, "b": None, "rest": "var_positional", "extra": "var_keyword"}
    assert "expose.system" not in methods and "expose.Widget" not in methods
    assert "summary" not in methods["slow.sleep"]  # no docstring, no summary


# -- errors keep the connection ------------------------------------------------------------------

def test_parse_error_keeps_the_connection_usable(conn: Conn) -> None:
    ping_is_next(conn)  # the first byte chose the lines dialect; later bad lines are parse errors
    conn.send_raw(b"this is not json\n")
    reply = conn.line()
    assert reply["jsonrpc"] == "2.0" and reply["id"] is None and reply["error"]["code"] == -32700
    conn.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"aio.double","params":[2]\n')  # truncated object
    assert conn.line()["error"]["code"] == -32700
    conn.send(req("aio.double", [2], rid=2))
    assert conn.line() == {"jsonrpc": "2.0", "id": 2, "result": 4}


@pytest.mark.parametrize(("obj", "rid"), [
    ({"jsonrpc": "1.0", "method": "rpc.ping", "id": 3}, 3),
    ({"method": "rpc.ping", "id": 4}, 4),
    ({"jsonrpc": "2.0", "method": 5, "id": 5}, 5),
    ({"jsonrpc": "2.0", "method": "rpc.ping", "params": "x", "id": 6}, 6),
    ({"jsonrpc": "2.0", "method": "rpc.ping", "id": 7, "timeout": "soon"}, 7),
    ({"jsonrpc": "2.0", "method": "rpc.ping", "id": 8, "timeout": -1}, 8),
    ("just a string", None),
])
def test_invalid_requests_answer_with_their_id_and_keep_the_connection(conn: Conn, obj: Any, rid: Any) -> None:
    ping_is_next(conn, "first")
    conn.send(obj)
    reply = conn.line()
    assert reply["id"] == rid and reply["error"]["code"] == -32600
    assert reply["error"]["message"]
    ping_is_next(conn)


def test_a_first_line_that_is_not_json_ish_closes_the_connection(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"hello there\n")
        sock.settimeout(5)
        try:
            assert sock.recv(4096) == b""
        except ConnectionResetError:
            pass  # closed with a reset: also closed


def test_a_json_ish_first_line_that_is_not_a_request_gets_a_parse_error_then_close(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b'"just a string"\n')
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    reply = json.loads(data)
    assert reply["id"] is None and reply["error"]["code"] == -32700


def test_blank_lines_and_crlf_are_accepted(conn: Conn) -> None:
    conn.send_raw(b'\n\r\n{"jsonrpc":"2.0","id":1,"method":"rpc.ping"}\r\n')
    assert conn.line() == {"jsonrpc": "2.0", "id": 1, "result": "pong"}


def test_request_split_across_writes(conn: Conn) -> None:
    data = json.dumps(req("aio.double", [21], rid="split")).encode() + b"\n"
    for i in range(0, len(data), 7):
        conn.send_raw(data[i:i + 7])
        time.sleep(0.005)
    assert conn.line() == {"jsonrpc": "2.0", "id": "split", "result": 42}


# -- the "timeout" member ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["slow.sleep", "slow.asleep"])
def test_timeout_member_shortens_the_deadline(conn: Conn, method: str) -> None:
    start = time.monotonic()
    conn.send(req(method, [3000], rid="t", timeout=0.3))
    reply = conn.line()
    elapsed = time.monotonic() - start
    assert reply["id"] == "t" and reply["error"]["code"] == -32001
    assert reply["error"]["data"]["timeout"] == 0.3
    assert elapsed < 2.5  # functional check, wide margin: far less than the 3 s call and the 5 s --timeout
    ping_is_next(conn)


def test_timeout_member_cannot_extend_the_server_deadline() -> None:
    with Server(APPS / "semantics", "--timeout", "0.5") as srv:
        c = Conn(srv)
        try:
            c.send(req("slow.asleep", [3000], rid=1, timeout=60))
            reply = c.line()
            assert reply["error"]["code"] == -32001 and reply["error"]["data"]["timeout"] == 0.5
            c.send(req("slow.asleep", [10], rid=2, timeout=60))
            assert c.line()["result"] == 10
        finally:
            c.close()


def test_error_data_traceback_only_with_debug(conn: Conn) -> None:
    conn.send(req("errors.declined", [1], rid=1))
    err = conn.line()["error"]
    assert err["data"]["type"] == "PaymentDeclined" and "traceback" not in err["data"]
    with Server(APPS / "semantics", "--debug") as srv:
        c = Conn(srv)
        try:
            c.send(req("errors.declined", [1], rid=1))
            data = c.line()["error"]["data"]
            assert data["type"] == "PaymentDeclined"
            assert "raise PaymentDeclined" in data["traceback"]
        finally:
            c.close()


def test_many_connections_each_get_their_own_replies(server: Server) -> None:
    conns = [Conn(server) for _ in range(20)]
    try:
        for i, c in enumerate(conns):
            c.send(req("aio.double", [i], rid=i))
        for i, c in enumerate(conns):
            assert c.line() == {"jsonrpc": "2.0", "id": i, "result": 2 * i}
    finally:
        for c in conns:
            c.close()


def test_server_still_healthy(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"rpc.ping"}\n')
        assert json.loads(recv_line(sock))["result"] == "pong"
    assert server.proc.poll() is None
