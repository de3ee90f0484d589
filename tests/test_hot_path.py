"""The fast paths of docs/performance.md, checked for behaviour (never for speed).

- a sync function runs in the pool until proven fast, then inline on the event loop (--inline-sync);
  a slow one never does; one that stalls the loop goes back to the pool; --no-inline-sync keeps all there;
- an async function is stepped once by the runner: asyncio.timeout, current_task, errors and the
  --timeout deadline behave exactly as with a plain await;
- replies of pipelined calls (coalesced into one write) all arrive, each once;
- the idle clock restarts with every request (one lazily re-armed timer per connection).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import APPS, Server, recv_line

pytestmark = pytest.mark.timeout(60)
APP = APPS / "hotpath"


def request(method: str, params: Any = None, rid: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params or [], "id": rid}).encode() + b"\n"


def call(sock: socket.socket, method: str, params: Any = None) -> Any:
    sock.sendall(request(method, params))
    reply = json.loads(recv_line(sock))
    assert "result" in reply, reply
    return reply["result"]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(APP, "--timeout", "1", "--idle-timeout", "1") as s:
        yield s


def until_inline(sock: socket.socket, method: str) -> int:
    """Calls until one ran on the event loop (bounded: a loaded machine may reset the proof a few times)."""
    for n in range(1, 400):
        if call(sock, method) == "MainThread":
            return n
    pytest.fail(f"{method} never ran inline in 400 fast calls")


def test_fast_sync_function_moves_from_pool_to_event_loop(server: Server) -> None:
    with server.connect() as sock:
        first = [call(sock, "hot.where") for _ in range(16)]
        until_inline(sock, "hot.where")
    assert all(name.startswith("ppy-call") for name in first), first  # 16 proofs in the pool first


def test_slow_sync_function_never_runs_on_the_event_loop(server: Server) -> None:
    with server.connect() as sock:
        names = [call(sock, "hot.slow_where") for _ in range(24)]
    assert all(name.startswith("ppy-call") for name in names), names


def test_a_stall_sends_the_function_back_to_the_pool(server: Server) -> None:
    with server.connect() as sock:
        for _ in range(5):
            until_inline(sock, "hot.stall_where")
            if call(sock, "hot.stall_where", [40]) == "MainThread":  # the stall ran inline...
                assert call(sock, "hot.stall_where").startswith("ppy-call")  # ...and sent it back
                break
        else:
            pytest.fail("the stalling call never ran inline")
    assert "hot.stall_where took" in server.output() and "until it proves fast again" in server.output()


def test_no_inline_sync_keeps_every_sync_call_in_the_pool() -> None:
    with Server(APP, "--no-inline-sync") as s, s.connect() as sock:
        names = [call(sock, "hot.where") for _ in range(24)]
    assert all(name.startswith("ppy-call") for name in names), names


def test_async_functions_keep_await_semantics(server: Server) -> None:
    with server.connect() as sock:
        assert call(sock, "hot.timeout_inside") is True
        assert call(sock, "hot.yields_twice") == 3
        sock.sendall(request("hot.raises_timeout_at_once"))
        err = json.loads(recv_line(sock))["error"]
        assert err["code"] == -32000 and err["data"]["type"] == "TimeoutError"
        sock.sendall(request("hot.hangs"))
        err = json.loads(recv_line(sock, 10))["error"]
        assert err["code"] == -32001 and err["data"]["timeout"] == 1
        assert call(sock, "rpc.ping") == "pong"


def test_pipelined_replies_all_arrive_once(server: Server) -> None:
    methods = ["hot.where", "hot.yields_twice", "rpc.ping", "hot.slow_where"] * 8
    burst = b"".join(request(m, rid=i) for i, m in enumerate(methods))
    with server.connect() as sock:
        sock.sendall(burst)
        replies = [json.loads(recv_line(sock)) for _ in methods]
    assert sorted(r["id"] for r in replies) == list(range(len(methods)))
    assert all("result" in r for r in replies)


def test_requests_restart_the_idle_clock(server: Server) -> None:
    with server.connect() as sock:
        start = time.monotonic()
        while time.monotonic() - start < 2.2:  # more than twice the 1 s idle timeout, never idle 1 s
            assert call(sock, "rpc.ping") == "pong"
            time.sleep(0.3)
        sock.settimeout(5)
        quiet = time.monotonic()
        assert sock.recv(1) == b""  # then idle: closed about 1 s after the last request
    assert 0.5 < time.monotonic() - quiet < 4
