"""The fast paths of docs/performance.md, checked for behaviour (never for speed).

- sync functions always run in pool threads, never on the event loop; fast calls of one loop turn share
  a pool job (ppy.run.lane), and a slow call does not hold up the calls batched behind it;
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


def test_sync_functions_never_run_on_the_event_loop(server: Server) -> None:
    with server.connect() as sock:
        names = [call(sock, "hot.where") for _ in range(200)]  # fast calls, many times over
    assert all(name.startswith("ppy-call") for name in names), set(names)


def test_a_slow_call_does_not_hold_up_fast_calls_of_the_same_turn(server: Server) -> None:
    """A fast function turning slow (here 800 ms) shares its batch; the watchdog frees its batch-mates."""
    with server.connect() as sock:
        for _ in range(5):  # the function is known to be fast, so its next calls are batched
            call(sock, "hot.stall_where")
        burst = request("hot.stall_where", [800], rid=0) + b"".join(
            request("hot.where", rid=i) for i in range(1, 9))
        sock.sendall(burst)
        order = [json.loads(recv_line(sock, 10))["id"] for _ in range(9)]
    assert order[-1] == 0, order  # every fast call was answered before the slow one


def test_calls_of_a_slow_function_run_side_by_side(server: Server) -> None:
    """Calls of a known-slow function run on several pool threads, not one after the other in a batch.

    (Whether they get a job each at once or after the watchdog splits their batch is a latency matter,
    shown by the sleep(10 ms) point of the benchmark, not by this test.)"""
    with server.connect() as sock:
        call(sock, "hot.slow_where")  # now known to be slow
        burst = b"".join(request("hot.slow_where", rid=i) for i in range(8))
        sock.sendall(burst)
        names = {json.loads(recv_line(sock, 10))["result"] for _ in range(8)}
    assert len(names) > 1, names  # more than one pool thread served the burst


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
