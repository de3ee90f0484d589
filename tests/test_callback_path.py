"""Sync functions that were fast last time run without a task or future (docs/performance.md):
the lane calls the dispatcher back on the loop.  Every outcome must read exactly as on the task path.

Each test calls a function once first: a function's first call always takes the task path (it is
not known to be fast yet), so only the calls after it exercise the callback path.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import APPS, Server
from probes import Lines, legacy_call, lines_call, request, wait_inflight

APP = APPS / "settle"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(APP, "--timeout", "1")
    yield srv
    assert srv.stop() == 0, srv.output()


def warm(server: Server, method: str, params: list[object] | None = None) -> None:
    assert "result" in lines_call(server, method, params or [])


def test_results_and_errors_match_the_task_path(server: Server) -> None:
    warm(server, "s.raises")
    assert lines_call(server, "s.raises", [False]) == {"jsonrpc": "2.0", "id": 1, "result": "ok"}
    err = lines_call(server, "s.raises", [True])["error"]
    assert err["code"] == -32000 and err["message"] == "asked to fail" and err["data"]["type"] == "LookupError"
    assert isinstance(err["data"]["request_id"], int)  # logged with its traceback, as on the task path
    assert f"request_id={err['data']['request_id']}" in server.output()


def test_an_unencodable_result_is_an_error_reply(server: Server) -> None:
    warm(server, "s.maybe_opaque")
    err = lines_call(server, "s.maybe_opaque", [True])["error"]
    assert err["code"] == -32603 and "Opaque" in err["message"]
    assert_healthy_settle(server)


def test_sys_exit_is_an_application_error_and_the_server_lives(server: Server) -> None:
    warm(server, "s.maybe_exit")
    err = lines_call(server, "s.maybe_exit", [4])["error"]
    assert err["code"] == -32000 and err["data"]["type"] == "SystemExit"
    assert server.proc.poll() is None
    assert_healthy_settle(server)


def test_a_fast_function_turning_slow_gets_its_deadline(server: Server) -> None:
    warm(server, "s.sleep", [0])
    started = time.monotonic()
    err = lines_call(server, "s.sleep", [2.5])["error"]
    assert err["code"] == -32001 and time.monotonic() - started < 2.0
    assert_healthy_settle(server)


def test_pipelined_calls_and_notifications_on_one_connection(server: Server) -> None:
    warm(server, "s.echo", [0])
    with server.connect(10) as sock:
        lines = Lines(sock)
        payload = b"".join(request("s.echo", [i], rid=i) for i in range(200))
        payload += json.dumps({"jsonrpc": "2.0", "method": "s.echo", "params": ["note"]}).encode() + b"\n"
        payload += request("s.echo", ["last"], rid="last")
        sock.sendall(payload)
        replies = [lines.next(10) for _ in range(201)]
    assert sorted(r["id"] for r in replies if r["id"] != "last") == list(range(200))
    assert all(r["result"] == [r["id"]] for r in replies if r["id"] != "last")
    assert [r for r in replies if r["id"] == "last"] == [{"jsonrpc": "2.0", "id": "last", "result": ["last"]}]


def test_legacy_calls_take_it_too(server: Server) -> None:
    assert legacy_call(server, "s", "echo", [1]) == {"data": [1], "error": ""}
    assert legacy_call(server, "s", "raises", [False]) == {"data": "ok", "error": ""}
    reply = legacy_call(server, "s", "raises", [True])
    assert reply["data"] == [] and reply["error"].startswith("LookupError")


def assert_healthy_settle(server: Server) -> None:
    """probes.assert_healthy for this app (it has s.echo, not the core app's calls.echo)."""
    assert server.proc.poll() is None, server.output()[-3000:]
    assert lines_call(server, "s.echo", ["alive"], timeout=5)["result"] == ["alive"]
    assert legacy_call(server, "s", "echo", ["alive"], timeout=5) == {"data": ["alive"], "error": ""}


def test_sigterm_waits_for_a_call_whose_client_left(tmp_path: Path) -> None:
    # No task stands for such a call, and its connection is gone: the drain must still let it finish
    # (the dispatcher's in-flight count), not exit under it.
    srv = Server(APP, "--timeout", "5", http=True)
    try:
        mark = tmp_path / "mark"
        warm(srv, "s.touch", [str(tmp_path / "warm")])
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(request("s.touch", [str(mark), 1.0]))
            wait_inflight(srv, 1)  # the call is running in its pool thread
            # Close with a reset, not a FIN: the server drops the connection at once (a half-closed
            # one would stay open, waiting to send its reply, and the drain would wait for that).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(15) == 0, srv.output()
        assert mark.read_text() == "done"
    finally:
        if srv.proc.poll() is None:
            srv.stop()


def test_a_failing_callback_does_not_stop_the_lane_delivering_the_others(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from ppy.app.function import Function
    from ppy.run.lane import SyncLane
    from ppy.run.threads import SyncCall

    fn = Function.load("t.echo", lambda x: x)
    got: list[object] = []

    def broken(result: object, error: object) -> None:
        raise RuntimeError("bug in a front end")

    async def main() -> None:
        pool = ThreadPoolExecutor(2)
        lane = SyncLane(pool, cpu_slots=2)
        try:
            lane.submit_to(SyncCall(fn, 5.0, broken, False), fn.fn, (1,), timeout=5.0)
            lane.submit_to(SyncCall(fn, 5.0, lambda r, e: got.append((r, e)), False), fn.fn, (2,), timeout=5.0)
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.01)
        finally:
            pool.shutdown(wait=True)

    asyncio.run(main())
    assert got == [(2, None)]
    assert "internal error while answering a call of t.echo" in caplog.text
