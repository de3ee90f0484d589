"""Hostile and broken input against a real ``ppy serve``: each case gets a clear answer (or a
closed connection), touches only its own connection, and a healthy client is served right after.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import APPS, Server, legacy_frame, recv_all, recv_line
from probes import (
    PeakRss,
    assert_healthy,
    legacy_call,
    legacy_raw,
    lines_call,
    parse_legacy,
    read_until_closed,
    request,
)

pytestmark = pytest.mark.timeout(90)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """The core test app as a production server would run it: no --debug, a short --timeout."""
    srv = Server(APPS / "core", "--timeout", "1")
    yield srv
    srv.stop()


# -- legacy headers ------------------------------------------------------------------


def test_header_of_letters_is_closed_without_a_word(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"abc........")
        data, how = read_until_closed(sock, 5)
    assert data == b"" and how in ("eof", "reset")
    assert_healthy(server)


@pytest.mark.parametrize("first", [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    bytes.fromhex("160301020001") + b"\x00" * 64,  # the start of a TLS ClientHello
    b"\x00\x01\x02garbage",
    b" " * 2000,  # whitespace only, past the 1024 bytes allowed before a request
], ids=["http", "tls", "binary", "whitespace"])
def test_not_a_client_of_ours_is_closed_without_a_word(server: Server, first: bytes) -> None:
    with server.connect() as sock:
        sock.sendall(first)
        data, how = read_until_closed(sock, 5)
    assert data == b"" and how in ("eof", "reset")
    assert_healthy(server)


@pytest.mark.parametrize("first", [b'"just a string"\n', b"true\n", b"]\n"])
def test_jsonish_first_byte_gets_a_parse_error_line(server: Server, first: bytes) -> None:
    with server.connect() as sock:
        sock.sendall(first)
        data, how = read_until_closed(sock, 5)
    assert how == "eof" and json.loads(data)["error"]["code"] == -32700


def test_negative_length_header_gets_a_parse_error_line(server: Server) -> None:
    # '-' could start a JSON number: docs/protocol.md answers such a first byte with a parse error line, then closes.
    with server.connect() as sock:
        sock.sendall(b"-1.00000000")
        data, how = read_until_closed(sock, 5)
    assert how == "eof"
    reply = json.loads(data)
    assert reply["error"]["code"] == -32700 and reply["id"] is None
    assert_healthy(server)


@pytest.mark.parametrize("header", [b"1e9.0000000", b"12345678901", b"1.2.3456789", b"4.0000000x0"])
def test_malformed_digit_header_gets_a_legacy_error(server: Server, header: bytes) -> None:
    with server.connect() as sock:
        sock.sendall(header + b'{"entry": "calls", "func": "echo", "param": []}')
        data, how = read_until_closed(sock, 5)
    assert how in ("eof", "reset")
    reply = parse_legacy(data)
    assert reply["data"] == [] and "header" in reply["error"]
    assert_healthy(server)


@pytest.mark.parametrize("header", [b"9999999999.", b"16777217.00", b"20000000.00"])
def test_declared_length_over_max_frame_bytes_is_refused_before_allocating(server: Server, header: bytes) -> None:
    with PeakRss(server.proc.pid) as rss, server.connect() as sock:
        sock.sendall(header)
        try:
            sock.sendall(b"x" * MiB)  # the server may already have closed: a reset is fine
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, how = read_until_closed(sock, 5)
    assert how in ("eof", "reset")
    reply = parse_legacy(data)
    assert reply["data"] == [] and "--max-frame-bytes" in reply["error"]
    print(f"RSS growth for header {header!r}: {rss.growth} KiB")
    assert rss.growth < 8 * 1024, f"RSS grew by {rss.growth} KiB for a refused frame"
    assert_healthy(server)


# -- broken payloads -------------------------------------------------------------------


def test_truncated_payload_then_full_close(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b'47.00000000{"entry": "calls", "func"')
    assert_healthy(server)


def test_truncated_payload_then_half_close_gets_an_error(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b'47.00000000{"entry": "calls", "func"')
        sock.shutdown(socket.SHUT_WR)
        reply = parse_legacy(recv_all(sock, 5))
    assert reply["data"] == [] and "closed" in reply["error"]
    assert_healthy(server)


def test_truncated_line_then_close(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b'{"jsonrpc": "2.0", "method": "calls.sleep", "params": [5], "id"')
    assert_healthy(server)


@pytest.mark.parametrize("payload", [b'{"entry": "calls", "func": "echo", "param": ["\xff\xfe"]}',
                                     b'{"entry": "calls", "func": "echo", "param": ["\xed\xa0\x80"]}',
                                     b"\xc3\x28"])
def test_invalid_utf8_legacy(server: Server, payload: bytes) -> None:
    reply = parse_legacy(legacy_raw(server, payload, 5))
    assert reply["data"] == [] and reply["error"]
    assert_healthy(server)


def test_invalid_utf8_line_gets_parse_error_and_connection_stays_usable(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b'{"jsonrpc": "2.0", "method": "calls.echo", "params": ["\xff"], "id": 1}\n')
        bad = json.loads(recv_line(sock, 5))
        sock.sendall(request("calls.echo", ["after"], 2))
        good = json.loads(recv_line(sock, 5))
    assert bad["error"]["code"] == -32700 and bad["id"] is None
    assert good == {"jsonrpc": "2.0", "id": 2, "result": ["after"]}
    assert_healthy(server)


def test_a_line_that_is_not_json_gets_parse_error_and_connection_stays_usable(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"{this is not json\n" + request("rpc.ping", [], 7))
        first = json.loads(recv_line(sock, 5))
        second = json.loads(recv_line(sock, 5))
    assert first["error"]["code"] == -32700
    assert second == {"jsonrpc": "2.0", "id": 7, "result": "pong"}


DEEP = 100_000


def test_json_nested_100k_deep_legacy(server: Server) -> None:
    param = b"[" * DEEP + b"]" * DEEP
    reply = parse_legacy(legacy_raw(server, b'{"entry": "calls", "func": "echo", "param": [' + param + b"]}", 10))
    assert reply["data"] == [] and "nests deeper than 64" in reply["error"]
    deep_object = b'{"a":' * DEEP + b"1" + b"}" * DEEP
    reply = parse_legacy(legacy_raw(server, deep_object, 10))
    assert reply["data"] == [] and "nests deeper" in reply["error"]
    assert_healthy(server)


def test_json_nested_100k_deep_lines(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b'{"jsonrpc": "2.0", "method": "calls.echo", "id": 1, "params": ['
                     + b"[" * DEEP + b"]" * DEEP + b"]}\n")
        deep = json.loads(recv_line(sock, 10))
        sock.sendall(b"[" * DEEP + b"]" * DEEP + b"\n")
        deep_batch = json.loads(recv_line(sock, 10))
        sock.sendall(request("calls.echo", [[[[1]]]], 2))
        after = json.loads(recv_line(sock, 5))
    assert deep["error"]["code"] == -32600 and "nests deeper" in deep["error"]["message"]
    assert deep_batch["error"]["code"] == -32600
    assert after["result"] == [[[[1]]]]
    assert_healthy(server)


def test_50mb_line_is_refused_closed_and_memory_stays_bounded(server: Server) -> None:
    chunk = b"x" * MiB
    sent = 0

    with PeakRss(server.proc.pid) as rss, server.connect(10) as sock:
        def flood() -> None:
            nonlocal sent
            try:
                sock.sendall(b'{"jsonrpc": "2.0", "method": "calls.echo", "id": 1, "params": ["')
                for _ in range(50):
                    sock.sendall(chunk)
                    sent += 1
                sock.sendall(b'"]}\n')
            except OSError:
                pass  # the server closed the connection mid-flood, as it should

        sender = threading.Thread(target=flood)
        sender.start()
        data, how = read_until_closed(sock, 30)
        sender.join(30)
    print(f"RSS growth for a 50 MB line: {rss.growth} KiB; {sent} MiB sent before the close")
    assert how in ("eof", "reset")
    reply = json.loads(data.splitlines()[0])
    assert reply["error"]["code"] == -32600 and "--max-frame-bytes" in reply["error"]["message"]
    assert sent < 50, "the server read the whole 50 MB line instead of closing at the limit"
    # The default limit is 16 MiB: the server may hold one line up to it, never the 50 MB.
    assert rss.growth < 40 * 1024, f"RSS grew by {rss.growth} KiB"
    assert_healthy(server)


# -- clients that do not read -------------------------------------------------------------

PING = b'{"jsonrpc":"2.0","method":"rpc.ping","params":[],"id":1}'
ECHO = b'{"jsonrpc":"2.0","method":"calls.echo","params":[1],"id":1}'


@pytest.mark.parametrize("line", [PING + b"\n", ECHO + b"\n", b"[" + b",".join([PING] * 3) + b"]\n"],
                         ids=["pings", "calls", "batches"])
def test_pipelining_without_reading_replies_keeps_memory_bounded(server: Server, line: bytes) -> None:
    """Replies pile up only to the socket buffers: then the server stops reading that client."""
    sent = 0
    with PeakRss(server.proc.pid) as rss, server.connect(10) as sock:
        def flood() -> None:
            nonlocal sent
            chunk = line * 2000
            try:
                for _ in range(2000):  # at most ~250 MB, far more than socket buffers take
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass  # closed at the end of the test

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        sender.join(2.0)
        stalled = sender.is_alive()  # blocked in sendall: the server stopped reading
        assert_healthy(server)
        sock.shutdown(socket.SHUT_RDWR)
        sender.join(10)
    print(f"{sent / 1e6:.1f} MB of requests sent before the server stopped reading; RSS +{rss.growth} KiB")
    assert stalled, f"the server read all {sent} bytes without its client reading a reply"
    assert rss.growth < 48 * 1024, f"RSS grew by {rss.growth} KiB"
    assert_healthy(server)


# -- clients that go away ---------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["lines", "legacy"])
def test_client_disconnects_mid_call(server: Server, dialect: str) -> None:
    for func in ("sleep", "asleep"):
        with server.connect() as sock:
            if dialect == "lines":
                sock.sendall(request(f"calls.{func}", [0.5]))
            else:
                sock.sendall(legacy_frame(json.dumps({"entry": "calls", "func": func, "param": [0.5]}).encode()))
    assert_healthy(server)
    # The calls finish into closed connections without an error in the server's log.
    threading.Event().wait(0.8)
    assert_healthy(server)
    log = server.output()
    assert "Traceback" not in log and "Exception in callback" not in log, log[-3000:]


# -- what can be called ---------------------------------------------------------------------

CANARY = Path("/tmp") / f"ppy-hostile-canary-{threading.get_native_id()}"

INJECTIONS = [
    f"hello(); __import__('os').system('touch {CANARY}')",
    f"hello'); import os; os.system('touch {CANARY}'); ('",
    f"echo('x'); open('{CANARY}', 'w')",
    "../../etc/passwd",
    "..",
    "../calls",
    "/etc/passwd",
    "/tmp",
    "os",
    "sys",
    "os.path",
    "subprocess",
    "builtins",
    "importlib",
    "__init__",
    "_private",
    "calls.__init__",
    "calls._private",
    "imports.os",
    "",
    " calls",
    "calls ",
    "calls\x00",
    "Calls",
]


@pytest.mark.parametrize("entry", INJECTIONS)
def test_hostile_entry_is_not_found_on_both_dialects(server: Server, entry: str) -> None:
    reply = lines_call(server, f"{entry}.echo", ["x"])
    assert reply["error"]["code"] in (-32601, -32600), reply
    assert reply["error"]["code"] == -32601 or entry == "", reply
    legacy = legacy_call(server, entry, "echo", ["x"])
    assert legacy["data"] == [] and legacy["error"], legacy
    assert not CANARY.exists()


@pytest.mark.parametrize("func", [
    f"hello(); __import__('os').system('touch {CANARY}')",
    f"echo('x'); __import__('os').system('touch {CANARY}'); ('",
    "echo()",
    "echo.__globals__",
    "_private",
    "__init__",
    "__import__",
    "__builtins__",
    "Opaque",  # a class defined in the module
    "time",  # a module imported into it
    "asyncio",
    "sys",
    "../echo",
])
def test_hostile_func_is_not_found_on_both_dialects(server: Server, func: str) -> None:
    reply = lines_call(server, f"calls.{func}", [])
    assert reply["error"]["code"] == -32601, reply
    legacy = legacy_call(server, "calls", func, [])
    assert legacy["data"] == [] and legacy["error"], legacy
    assert not CANARY.exists()


@pytest.mark.parametrize("method", [
    "imports.system", "imports.joined", "imports.check_output", "imports.borrowed", "imports.os",
    "imports.Thing", "imports.Thing.method", "imports.__init__", "imports.__all_note__",
    "listed.unlisted", "listed._hidden_but_listed", "listed.missing_name",
])
def test_names_that_are_not_exposed_functions(server: Server, method: str) -> None:
    entry, _, func = method.rpartition(".")
    assert lines_call(server, method, [])["error"]["code"] == -32601
    legacy = legacy_call(server, entry, func, [])
    assert legacy["data"] == [] and legacy["error"]


def test_exposed_functions_are_exactly_the_public_defined_ones(server: Server) -> None:
    assert lines_call(server, "imports.own")["result"] == "own"
    assert lines_call(server, "listed.shown")["result"] == "shown"
    doc = lines_call(server, "rpc.discover")["result"]
    names = {m["name"] for m in doc["methods"]}
    assert {"imports.own", "listed.shown", "calls.echo"} <= names
    assert not {n for n in names if n.startswith("imports.") and n != "imports.own"}
    assert not {n for n in names if n.startswith("listed.") and n != "listed.shown"}
    assert not [n for n in names if "._" in n or n.startswith("_")]


@pytest.mark.parametrize("param", [
    [f"__import__('os').system('touch {CANARY}')"],
    {"args": f"'); __import__('os').system('touch {CANARY}'); ('"},
    [f"{{{{__import__('os').system('touch {CANARY}')}}}}"],
])
def test_params_are_data_never_code(server: Server, param: Any) -> None:
    reply = lines_call(server, "calls.echo", param)
    assert reply["result"] == param
    assert legacy_call(server, "calls", "echo", param) == {"data": param, "error": ""}
    assert not CANARY.exists()


# -- functions that misbehave ---------------------------------------------------------------


def test_function_that_raises(server: Server) -> None:
    reply = lines_call(server, "calls.raises", ["no such invoice"])
    err = reply["error"]
    assert err["code"] == -32000 and err["message"] == "no such invoice"
    assert err["data"]["type"] == "LookupError" and "traceback" not in err["data"]
    legacy = legacy_call(server, "calls", "raises", ["no such invoice"])
    assert legacy == {"data": [], "error": "LookupError: no such invoice"}
    assert_healthy(server)


@pytest.mark.parametrize("method", ["calls.unencodable"])
def test_unencodable_result_names_the_type(server: Server, method: str) -> None:
    err = lines_call(server, method)["error"]
    assert err["code"] == -32603 and "Opaque" in err["message"]
    legacy = legacy_call(server, "calls", "unencodable")
    assert legacy["data"] == [] and "Opaque" in legacy["error"]
    assert_healthy(server)


def _no_constants(name: str) -> None:
    raise AssertionError(f"reply carries a bare {name}, which is not JSON")


@pytest.mark.parametrize("func", ["nan", "infinity_inside"])
def test_nan_result_is_an_error_not_invalid_json(server: Server, func: str) -> None:
    with server.connect() as sock:
        sock.sendall(request(f"calls.{func}"))
        raw = recv_line(sock)
    err = json.loads(raw, parse_constant=_no_constants)["error"]  # strict JSON: no bare NaN/Infinity
    assert err["code"] == -32603 and "NaN" in err["message"]
    legacy = legacy_call(server, "calls", func)
    assert legacy["data"] == [] and "NaN" in legacy["error"]
    assert_healthy(server)


@pytest.mark.parametrize("func", ["hang", "ahang"])
def test_function_past_timeout_gets_32001(server: Server, func: str) -> None:
    err = lines_call(server, f"calls.{func}")["error"]
    assert err["code"] == -32001 and "--timeout" in err["message"]
    legacy = legacy_call(server, "calls", func)
    assert legacy["data"] == [] and "deadline" in legacy["error"]
    assert_healthy(server)


def test_a_sync_function_that_was_fast_then_blocks_affects_only_its_own_call() -> None:
    srv = Server(APPS / "core", "--timeout", "2")
    try:
        for _ in range(20):  # fast calls: the function shares pool jobs with others (ppy.run.lane)
            assert lines_call(srv, "calls.hang", [0])["result"] == "finished"
        with srv.connect(15) as sock:
            sock.sendall(request("calls.hang", [8]))
            threading.Event().wait(0.3)
            assert_healthy(srv, timeout=4)  # others are served while it blocks
            assert json.loads(recv_line(sock, 15))["error"]["code"] == -32001
    finally:
        srv.stop()


def test_sys_exit_in_a_function_is_an_application_error(server: Server) -> None:
    err = lines_call(server, "calls.exits", [7])["error"]
    assert err["code"] == -32000 and err["data"]["type"] == "SystemExit"
    legacy = legacy_call(server, "calls", "exits", [7])
    assert legacy["data"] == [] and legacy["error"].startswith("SystemExit")
    assert server.proc.poll() is None
    assert_healthy(server)


# -- tracebacks: log always, clients only with --debug -----------------------------------------


def test_without_debug_no_traceback_reaches_clients_but_the_log_has_it(server: Server) -> None:
    err = lines_call(server, "calls.raises", ["trace me please"])["error"]
    assert "traceback" not in err["data"]
    assert "Traceback" not in json.dumps(err) and "calls.py" not in json.dumps(err)
    rid = err["data"]["request_id"]
    legacy = legacy_call(server, "calls", "raises", ["trace me legacy"])
    assert "Traceback" not in legacy["error"] and "calls.py" not in legacy["error"]
    log = server.output()
    entry = re.search(rf"request_id={rid}\b.*?trace me please\n(Traceback.*?LookupError: trace me please)",
                      log, re.S)
    assert entry, log[-3000:]
    assert "calls.py" in entry.group(1) and "raise LookupError(message)" in entry.group(1)
    assert "LookupError: trace me legacy" in log


def test_with_debug_clients_get_the_traceback(test_server: Server) -> None:
    err = lines_call(test_server, "calls.raises", ["debug me"])["error"]
    assert err["code"] == -32000 and err["data"]["type"] == "LookupError"
    assert "raise LookupError(message)" in err["data"]["traceback"]
    assert f"request_id={err['data']['request_id']}" in test_server.output()
