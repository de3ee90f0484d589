"""Graceful shutdown of a real ``ppy serve``: SIGTERM stops accepting, answers every call in
flight with its result, then exits 0; a second signal forces the exit.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from conftest import APPS, Server, legacy_frame, recv_all
from probes import Lines, parse_legacy, read_until_closed, request, wait_inflight

pytestmark = pytest.mark.timeout(60)

CORE = APPS / "core"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(CORE, "--timeout", "10", http=True)
    yield srv
    srv.stop(signal.SIGKILL)


def _legacy_request(func: str, *param: object) -> bytes:
    return legacy_frame(json.dumps({"entry": "calls", "func": func, "param": list(param)}).encode())


def _wait_exit(server: Server, timeout: float) -> int:
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running {timeout} s after the signal:\n{server.output()[-3000:]}")


def _refused_soon(server: Server, within: float = 2.0) -> bool:
    """True once a new connection is refused (the signal is handled asynchronously)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                pass
        except ConnectionRefusedError:
            return True
        time.sleep(0.02)
    return False


def test_sigterm_answers_all_twenty_calls_in_flight(server: Server) -> None:
    lines_socks = [server.connect(15) for _ in range(4)]
    legacy_socks = [server.connect(15) for _ in range(8)]
    for i, sock in enumerate(lines_socks):
        sock.sendall(b"".join(request("calls.sleep" if (i + j) % 2 else "calls.asleep", [1.0], 10 * i + j)
                              for j in range(3)))
    for i, sock in enumerate(legacy_socks):
        sock.sendall(_legacy_request("sleep" if i % 2 else "asleep", 1.0))
    with server.connect() as idle:
        wait_inflight(server, 20)  # all 20 are running now (each takes 1 s)
        server.proc.send_signal(signal.SIGTERM)
        assert _refused_soon(server), "new connections were still accepted after SIGTERM"
        assert server.proc.poll() is None, "exited before the calls in flight finished"
        # An idle connection has nothing owed: it is closed at once, without waiting for the calls.
        assert read_until_closed(idle, 0.9) == (b"", "eof")

    results = []
    for i, sock in enumerate(lines_socks):
        replies = Lines(sock)
        got = {r["id"]: r for r in (replies.next(15) for _ in range(3))}
        assert got == {10 * i + j: {"jsonrpc": "2.0", "id": 10 * i + j, "result": 1.0} for j in range(3)}
        assert read_until_closed(sock, 5) == (b"", "eof")  # closed once nothing more is owed
        results += list(got.values())
    for sock in legacy_socks:
        assert parse_legacy(recv_all(sock, 15)) == {"data": 1.0, "error": ""}
        results.append(sock)
    assert len(results) == 20
    assert _wait_exit(server, 15) == 0
    assert "finishing 20 calls in flight" in server.output()
    for sock in lines_socks + legacy_socks:
        sock.close()


def test_requests_arriving_during_the_drain_are_refused_with_32002(server: Server) -> None:
    with server.connect(15) as sock:
        sock.sendall(request("calls.asleep", [1.5], 1))
        wait_inflight(server, 1)
        server.proc.send_signal(signal.SIGTERM)
        assert _refused_soon(server)
        sock.sendall(request("calls.echo", ["late"], 2))
        replies = Lines(sock)
        late = replies.next()
        running = replies.next()
    assert late["id"] == 2 and late["error"]["code"] == -32002 and "shutting down" in late["error"]["message"]
    assert running == {"jsonrpc": "2.0", "id": 1, "result": 1.5}
    assert _wait_exit(server, 15) == 0


@pytest.mark.parametrize("dialect", ["lines", "legacy"])
def test_a_large_reply_is_delivered_whole_during_the_drain(server: Server, dialect: str) -> None:
    size = 8 * 1024 * 1024  # more than the socket buffers hold: the server must wait for the client to read
    with server.connect(15) as sock:
        sock.sendall(request("calls.big", [size, 0.5]) if dialect == "lines" else _legacy_request("big", size, 0.5))
        wait_inflight(server, 1)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # a slow reader: the reply is still in the server's buffers when the call is done
        data, how = read_until_closed(sock, 15)
    assert how == "eof"
    if dialect == "lines":
        assert json.loads(data) == {"jsonrpc": "2.0", "id": 1, "result": "x" * size}
    else:
        assert parse_legacy(data) == {"data": "x" * size, "error": ""}
    assert _wait_exit(server, 15) == 0


def test_second_signal_forces_exit(server: Server) -> None:
    with server.connect(15) as sock:
        sock.sendall(request("calls.asleep", [8.0]))
        wait_inflight(server, 1)
        server.proc.send_signal(signal.SIGTERM)
        assert _refused_soon(server)
        assert server.proc.poll() is None
        server.proc.send_signal(signal.SIGINT)
        code = _wait_exit(server, 5)  # far less than the 8 s call
    assert code != 0
    assert "second signal" in server.output()


def test_a_thread_stuck_past_its_deadline_does_not_hold_the_exit() -> None:
    srv = Server(CORE, "--timeout", "1")
    try:
        with srv.connect(10) as sock:
            sock.sendall(request("calls.hang", [60]))
            assert Lines(sock).next()["error"]["code"] == -32001
        srv.proc.send_signal(signal.SIGTERM)
        assert _wait_exit(srv, 15) == 0  # not the 60 s the thread still sleeps
        assert "abandoned" in srv.output()
    finally:
        srv.stop(signal.SIGKILL)


def test_a_call_that_cannot_finish_by_the_drain_deadline_still_gets_an_error() -> None:
    # --timeout 1: the drain waits 1 s plus a 2 s margin.  A legacy frame that completes 2.5 s into
    # the drain starts a call that would end at 3.5 s; at 3 s it is cut off and answered.
    srv = Server(CORE, "--timeout", "1", "--request-timeout", "10")
    try:
        with srv.connect(15) as sock:
            frame = _legacy_request("asleep", 5)
            sock.sendall(frame[:5])
            time.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(2.5)
            sock.sendall(frame[5:])
            reply = parse_legacy(recv_all(sock, 10))
        assert reply["data"] == [] and "shutting down" in reply["error"]
        assert _wait_exit(srv, 10) == 0
    finally:
        srv.stop(signal.SIGKILL)
