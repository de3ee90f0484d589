"""Every limit of docs/security.md against a real ``ppy serve``: it is enforced, answered with a clear
error in the client's dialect, and leaves the server serving healthy clients.
"""

from __future__ import annotations

import json
import resource
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import APPS, PPY, ROOT, Server, free_port, legacy_frame, recv_line
from probes import Lines, assert_healthy, legacy_call, legacy_raw, lines_call, parse_legacy, read_until_closed, request

pytestmark = pytest.mark.timeout(120)

CORE = APPS / "core"


def _serve(*args: str) -> Iterator[Server]:
    srv = Server(CORE, *args)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tight() -> Iterator[Server]:
    yield from _serve("--max-inflight", "2", "--max-batch", "3", "--max-frame-bytes", "4096",
                      "--max-depth", "10", "--timeout", "10")


@pytest.fixture(scope="module")
def defaults() -> Iterator[Server]:
    """Default limits, except a short --request-timeout so trickling clients are cut off quickly."""
    yield from _serve("--request-timeout", "2")


# -- calls in flight ---------------------------------------------------------------------------


def test_max_inflight_answers_32002_at_once(tight: Server) -> None:
    with tight.connect(10) as sock:
        # Calls are admitted in the order their lines arrive: 1 and 2 take both slots before 3 is read.
        sock.sendall(request("calls.sleep", [1.5], 1) + request("calls.asleep", [1.5], 2)
                     + request("calls.echo", ["one too many"], 3))
        replies = Lines(sock)
        first = replies.next()
        legacy = legacy_call(tight, "calls", "echo", ["also too many"])
        assert lines_call(tight, "rpc.ping")["result"] == "pong"  # built-ins are not calls in flight
        rest = {r["id"]: r for r in (replies.next(), replies.next())}
    # The refused call is answered before the two running ones finish: no queue.
    assert first["id"] == 3 and first["error"]["code"] == -32002
    assert "--max-inflight" in first["error"]["message"]
    assert legacy["data"] == [] and "--max-inflight" in legacy["error"]
    assert rest == {1: {"jsonrpc": "2.0", "id": 1, "result": 1.5}, 2: {"jsonrpc": "2.0", "id": 2, "result": 1.5}}
    assert_healthy(tight)


@pytest.mark.parametrize("func", ["sleep", "asleep"])
def test_max_inflight_holds_for_a_burst_in_one_read(tight: Server, func: str) -> None:
    """Requests arriving together are admitted one by one: only 2 of 6 run, 4 are refused."""
    with tight.connect(10) as sock:
        sock.sendall(b"".join(request(f"calls.{func}", [0.5], i) for i in range(6)))
        replies = Lines(sock)
        got = [replies.next() for _ in range(6)]
    refused = [r for r in got if "error" in r]
    assert len(refused) == 4 and {r["error"]["code"] for r in refused} == {-32002}, got
    assert sorted(r["result"] for r in got if "result" in r) == [0.5, 0.5]
    assert_healthy(tight)


def test_max_batch(tight: Server) -> None:
    with tight.connect() as sock:
        three = b"[" + b",".join(request("rpc.ping", [], i).strip() for i in range(3)) + b"]\n"
        four = b"[" + b",".join(request("rpc.ping", [], i).strip() for i in range(4)) + b"]\n"
        sock.sendall(four)
        refused = json.loads(recv_line(sock))
        sock.sendall(three)
        answered = json.loads(recv_line(sock))
    assert refused["error"]["code"] == -32600 and "limit of 3" in refused["error"]["message"]
    assert sorted(r["id"] for r in answered) == [0, 1, 2] and {r["result"] for r in answered} == {"pong"}


def test_batch_members_count_against_max_inflight(tight: Server) -> None:
    with tight.connect() as sock:
        sock.sendall(b"[" + b",".join(request("calls.asleep", [0.3], i).strip() for i in range(3)) + b"]\n")
        answered = json.loads(recv_line(sock))
    outcomes = sorted(r.get("result", r.get("error", {}).get("code")) for r in answered)
    assert outcomes == [-32002, 0.3, 0.3]


def test_default_max_batch_is_100(defaults: Server) -> None:
    def batch(n: int) -> bytes:
        return b"[" + b",".join(request("rpc.ping", [], i).strip() for i in range(n)) + b"]\n"

    with defaults.connect() as sock:
        sock.sendall(batch(100))
        assert len(json.loads(recv_line(sock))) == 100
        sock.sendall(batch(101))
        assert json.loads(recv_line(sock))["error"]["code"] == -32600


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def test_max_depth(tight: Server) -> None:
    # The request object is level 1 and "params" level 2: 8 more arrays make 10, the limit.
    assert lines_call(tight, "calls.echo", [_nested(7)])["result"] == [_nested(7)]
    err = lines_call(tight, "calls.echo", [_nested(9)])["error"]
    assert err["code"] == -32600 and "deeper than 10" in err["message"]
    legacy = legacy_call(tight, "calls", "echo", [_nested(9)])
    assert legacy["data"] == [] and "deeper than 10" in legacy["error"]


def test_default_max_depth_is_64(defaults: Server) -> None:
    assert lines_call(defaults, "calls.echo", [_nested(61)])["result"] == [_nested(61)]
    assert lines_call(defaults, "calls.echo", [_nested(63)])["error"]["code"] == -32600


def test_max_frame_bytes_lines_and_legacy(tight: Server) -> None:
    assert lines_call(tight, "calls.big", [3000])["result"] == "x" * 3000  # replies are not limited
    assert lines_call(tight, "calls.echo", ["y" * 3900])["result"] == ["y" * 3900]
    with tight.connect() as sock:
        sock.sendall(request("calls.echo", ["y" * 4100]))
        data, how = read_until_closed(sock, 5)
    assert how == "eof"
    err = json.loads(data)["error"]
    assert err["code"] == -32600 and "--max-frame-bytes (4096" in err["message"]
    reply = parse_legacy(legacy_raw(tight, json.dumps({"entry": "calls", "func": "echo", "param": ["y" * 4100]})
                                    .encode()))
    assert reply["data"] == [] and "exceeds --max-frame-bytes 4096" in reply["error"]
    assert legacy_call(tight, "calls", "echo", ["y" * 3900]) == {"data": ["y" * 3900], "error": ""}
    assert_healthy(tight)


# -- slow and idle clients ----------------------------------------------------------------------


def test_trickling_clients_are_cut_off_by_request_timeout(defaults: Server) -> None:
    """200 clients sending one byte a second: the 2 s whole-request deadline is not reset by trickling."""
    lines_req = request("calls.echo", ["slow" * 10])
    legacy_req = legacy_frame(json.dumps({"entry": "calls", "func": "echo", "param": ["slow" * 10]}).encode())
    socks = [defaults.connect(5) for _ in range(200)]
    payload = {s: (lines_req if i % 2 else legacy_req) for i, s in enumerate(socks)}
    received: dict[socket.socket, bytes] = {s: b"" for s in socks}
    closed: dict[socket.socket, float] = {}
    start = time.monotonic()
    try:
        for second in range(8):  # the deadline is 2 s; 8 s is a wide margin
            for s in socks:
                if s not in closed:
                    try:
                        s.send(payload[s][second:second + 1])
                    except OSError:
                        closed[s] = time.monotonic() - start
            assert_healthy(defaults)  # served while 200 slow clients hold connections
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and len(closed) < len(socks):
                readable, _, _ = select.select([s for s in socks if s not in closed], [], [],
                                               max(0.0, deadline - time.monotonic()))
                for s in readable:
                    try:
                        chunk = s.recv(65536)
                    except OSError:
                        chunk = b""
                    received[s] += chunk
                    if not chunk:
                        closed[s] = time.monotonic() - start
            if len(closed) == len(socks):
                break
        assert len(closed) == len(socks), f"{len(socks) - len(closed)} trickling connections were never cut off"
        print(f"trickling clients cut off between {min(closed.values()):.2f} and {max(closed.values()):.2f} s")
        for s in socks:
            if payload[s] is lines_req:
                err = json.loads(received[s])["error"]
                assert err["code"] == -32600 and "--request-timeout" in err["message"]
            else:
                reply = parse_legacy(received[s])
                assert reply["data"] == [] and "--request-timeout" in reply["error"]
    finally:
        for s in socks:
            s.close()
    assert_healthy(defaults)


def test_a_thousand_idle_connections_do_not_block_a_healthy_client(defaults: Server) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    socks: list[socket.socket] = []
    try:
        for _ in range(1000):
            socks.append(defaults.connect(5))
        assert_healthy(defaults)
        # They are real, open, usable connections: a few of them now make a call.
        for i, s in enumerate(socks[::250]):
            s.sendall(request("calls.echo", [i], i))
            assert json.loads(recv_line(s, 5))["result"] == [i]
        for s in socks[1::100]:
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)  # nothing to read and not closed
    finally:
        for s in socks:
            s.close()
    assert_healthy(defaults)


@pytest.fixture(scope="module")
def few_conns() -> Iterator[Server]:
    yield from _serve("--max-connections", "5")


def _hold(server: Server, count: int, held: list[socket.socket]) -> None:
    """Open ``count`` connections that each answered a ping.  The server notices a close
    asynchronously, so the readiness probe of ``Server.wait_ready`` may still count for an instant
    on a loaded machine: a connection refused for that is retried, within a bound."""
    deadline = time.monotonic() + 10
    while len(held) < count:
        s = server.connect()
        s.sendall(request("rpc.ping", [], len(held)))
        reply = json.loads(recv_line(s))
        if "result" in reply:
            assert reply["result"] == "pong"
            held.append(s)
            continue
        s.close()
        assert reply["error"]["code"] == -32002 and time.monotonic() < deadline, reply
        time.sleep(0.05)


def test_max_connections_refuses_in_the_clients_dialect(few_conns: Server) -> None:
    held: list[socket.socket] = []
    try:
        _hold(few_conns, 5, held)
        with few_conns.connect() as extra:
            extra.sendall(request("calls.echo", ["x"], 9))
            data, how = read_until_closed(extra, 5)
        assert how == "eof"
        err = json.loads(data)["error"]
        assert err["code"] == -32002 and "--max-connections" in err["message"]
        reply = parse_legacy(legacy_raw(few_conns, json.dumps({"entry": "calls", "func": "echo"}).encode(), 5))
        assert reply["data"] == [] and "--max-connections" in reply["error"]
        with few_conns.connect() as silent:  # an over-limit client that says nothing is not kept
            data, how = read_until_closed(silent, 5)
        assert data == b"" and how in ("eof", "reset")
        # The held connections were not disturbed.
        held[0].sendall(request("calls.echo", ["still here"], 1))
        assert json.loads(recv_line(held[0]))["result"] == ["still here"]
        for s in held[1:]:
            s.close()
        # With room again, new connections are served (the server notices the closes asynchronously).
        for _ in range(50):
            try:
                assert lines_call(few_conns, "rpc.ping")["result"] == "pong"
                break
            except (AssertionError, KeyError):
                time.sleep(0.1)
        else:
            pytest.fail("connections were still refused after the held ones closed")
    finally:  # closing twice is harmless; a socket left open fails a later test (ResourceWarning)
        for s in held:
            s.close()


@pytest.fixture(scope="module")
def short_idle() -> Iterator[Server]:
    yield from _serve("--idle-timeout", "1", "--timeout", "10")


def test_idle_timeout_closes_idle_connections(short_idle: Server) -> None:
    with short_idle.connect() as silent, short_idle.connect() as used:
        used.sendall(request("rpc.ping"))
        assert json.loads(recv_line(used))["result"] == "pong"
        t0 = time.monotonic()
        assert read_until_closed(silent, 6) == (b"", "eof")
        assert read_until_closed(used, 6) == (b"", "eof")
        waited = time.monotonic() - t0
    assert waited > 0.5, f"closed after {waited:.2f} s, before the 1 s idle timeout"
    assert_healthy(short_idle)


def test_a_call_longer_than_idle_timeout_is_not_cut(short_idle: Server) -> None:
    with short_idle.connect() as sock:
        sock.sendall(request("calls.sleep", [2.0]))
        assert json.loads(recv_line(sock, 10)) == {"jsonrpc": "2.0", "id": 1, "result": 2.0}


# -- token ----------------------------------------------------------------------------------------

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(TOKEN + "\n")
    yield from _serve("--token-file", str(token_file))


def test_token_legacy(guarded: Server) -> None:
    missing = legacy_call(guarded, "calls", "echo", [1])
    wrong = legacy_call(guarded, "calls", "echo", [1], token="nope")
    not_a_string = legacy_call(guarded, "calls", "echo", [1], token=12345)
    right = legacy_call(guarded, "calls", "echo", [1], token=TOKEN)
    for refused in (missing, wrong, not_a_string):
        assert refused["data"] == [] and "token" in refused["error"]
    assert right == {"data": [1], "error": ""}


def test_token_lines(guarded: Server) -> None:
    with guarded.connect() as sock:
        sock.sendall(request("calls.echo", [1], 1))
        before = json.loads(recv_line(sock))
        sock.sendall(request("rpc.discover", [], 2))
        discover = json.loads(recv_line(sock))
        sock.sendall(request("rpc.auth", ["wrong"], 3))
        wrong = json.loads(recv_line(sock))
        sock.sendall(request("calls.echo", [2], 4))
        still = json.loads(recv_line(sock))
        sock.sendall(request("rpc.auth", [TOKEN], 5))
        ok = json.loads(recv_line(sock))
        sock.sendall(request("calls.echo", [3], 6))
        after = json.loads(recv_line(sock))
    assert before["error"]["code"] == -32003 and "rpc.auth" in before["error"]["message"]
    assert discover["error"]["code"] == -32003
    assert wrong["error"]["code"] == -32003
    assert still["error"]["code"] == -32003
    assert ok["result"] is True
    assert after["result"] == [3]
    # Authentication belongs to the connection: a new one starts unauthenticated.
    assert lines_call(guarded, "calls.echo", [4])["error"]["code"] == -32003


def _serve_once(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PPY, "serve", str(CORE), "--port", str(free_port()), "--http-port", "0", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_non_loopback_host_without_token_refuses_to_start(host: str) -> None:
    done = _serve_once("--host", host)
    assert done.returncode != 0
    assert "refusing" in done.stderr and "--token-file" in done.stderr and "--insecure" in done.stderr


def test_insecure_or_token_lets_a_non_loopback_host_past_the_check(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is not on this machine, so binding fails after the safety check passed:
    # the test proves the check let it through without ever listening beyond loopback.
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    for extra in (["--insecure"], ["--token-file", str(token_file)]):
        done = _serve_once("--host", "192.0.2.1", *extra)
        assert done.returncode != 0 and "refusing" not in done.stderr
        assert "cannot listen on 192.0.2.1" in done.stderr


def test_empty_token_file_refuses_to_start(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  \n")
    done = _serve_once("--token-file", str(token_file))
    assert done.returncode != 0 and "empty" in done.stderr
