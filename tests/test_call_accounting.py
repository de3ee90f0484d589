"""Every admitted call gives its in-flight slot back exactly once, whatever its function raises or
returns: an exception whose ``str()`` and ``repr()`` raise, NaN, an unencodable result, ``sys.exit()``,
a ``TimeoutError`` of its own, an ``async def`` that ignores cancellation.  Each is called more times
than ``--max-inflight`` on every dialect and runner; a leaked slot would turn later calls into -32002.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import APPS, Server, legacy_frame, recv_all, recv_line
from probes import parse_legacy, request

APP = APPS / "hostile"
pytestmark = pytest.mark.timeout(180)
MAX_INFLIGHT = 4
ROUNDS = MAX_INFLIGHT + 2

#: method -> (code, data.type or None); the same on every dialect and runner.
EXPECTED: dict[str, tuple[int, str | None]] = {
    "h.unprintable": (-32000, "Unprintable"),
    "h.unprintable_slow": (-32000, "Unprintable"),
    "h.aunprintable": (-32000, "Unprintable"),
    "h.nan": (-32603, None),
    "h.odd": (-32603, None),
    "h.aodd": (-32603, None),
    "h.exits": (-32000, "SystemExit"),
    "h.own_timeout": (-32000, "TimeoutError"),
    "h.aown_timeout": (-32000, "TimeoutError"),
}


@pytest.fixture(scope="module", params=["threads", "isolate"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    extra = ["--isolate", "--pool-size", "2"] if request.param == "isolate" else []
    srv = Server(APP, "--max-inflight", str(MAX_INFLIGHT), "--timeout", "1", *extra, http=True)
    yield srv
    assert srv.stop() == 0, srv.output()


def inflight(server: Server) -> int:
    return int(httpx.get(f"{server.http_url}/console/stats.json", timeout=5).json()["inflight"])


def wait_idle(server: Server) -> None:
    deadline = time.monotonic() + 15
    while (n := inflight(server)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert n == 0, f"{n} calls still counted in flight:\n{server.output()[-3000:]}"


def check(method: str, error: dict[str, Any]) -> None:
    code, kind = EXPECTED[method]
    assert error["code"] == code, (method, error)
    if kind is not None:
        assert error["data"]["type"] == kind, (method, error)


def lines_rounds(server: Server, method: str) -> None:
    with server.connect(10) as sock:
        for i in range(ROUNDS):  # one at a time: concurrent calls past --max-inflight are -32002 anyway
            sock.sendall(request(method, [], rid=i))
            check(method, json.loads(recv_line(sock))["error"])
        batch = [{"jsonrpc": "2.0", "method": method, "params": [], "id": i} for i in range(MAX_INFLIGHT)]
        sock.sendall(json.dumps(batch).encode() + b"\n")
        replies = json.loads(recv_line(sock))
        assert len(replies) == MAX_INFLIGHT
        for reply in replies:
            check(method, reply["error"])


def legacy_round(server: Server, method: str) -> None:
    entry, func = method.split(".")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(legacy_frame(json.dumps({"entry": entry, "func": func, "param": []}).encode()))
        reply = parse_legacy(recv_all(sock))
    assert reply["error"], reply


def http_round(server: Server, method: str) -> None:
    body = {"jsonrpc": "2.0", "method": method, "params": [], "id": 1}
    check(method, httpx.post(f"{server.http_url}/rpc", json=body, timeout=10).json()["error"])


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_hostile_functions_release_their_slot_on_every_dialect(server: Server, method: str) -> None:
    lines_rounds(server, method)
    for _ in range(ROUNDS):
        legacy_round(server, method)
        http_round(server, method)
    wait_idle(server)
    with server.connect(10) as sock:
        sock.sendall(request("h.ok", [7]))
        assert json.loads(recv_line(sock))["result"] == 7


def test_user_timeout_error_keeps_its_message_and_traceback(server: Server) -> None:
    with server.connect(10) as sock:
        for method in ("h.own_timeout", "h.aown_timeout"):
            sock.sendall(request(method))
            error = json.loads(recv_line(sock))["error"]
            assert error["code"] == -32000, error
            assert error["message"] == "database did not answer in 2 s"
            assert error["data"]["type"] == "TimeoutError"
    deadline = time.monotonic() + 10
    while "raise TimeoutError(\"database did not answer" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "raise TimeoutError(\"database did not answer" in server.output()


def test_async_code_that_ignores_cancellation_still_gets_its_deadline(server: Server) -> None:
    started = time.monotonic()
    with server.connect(10) as sock:
        sock.sendall(b"".join(request("h.stubborn", [30], rid=i) for i in range(MAX_INFLIGHT)))
        for _ in range(MAX_INFLIGHT):
            error = json.loads(recv_line(sock, timeout=10))["error"]
            assert error["code"] == -32001, error
    assert time.monotonic() - started < 10  # not the 30 s the function would take
    wait_idle(server)


def test_sigterm_exits_on_time_despite_code_that_ignores_cancellation() -> None:
    srv = Server(APP, "--timeout", "2")
    try:
        with srv.connect(10) as sock:
            sock.sendall(request("h.stubborn", [60]))
            srv.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            error = json.loads(recv_line(sock, timeout=15))["error"]
            assert error["code"] == -32001, error
        assert srv.proc.wait(15) == 0
        assert time.monotonic() - started < 15  # the drain deadline (--timeout + 2 s), not the 60 s loop
        assert "caught the cancellation" in srv.output()  # logged and counted
    finally:
        srv.stop(signal.SIGKILL)
