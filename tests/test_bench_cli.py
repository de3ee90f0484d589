"""`ppy bench` (README.md) against a real server: every dialect, errors counted, bad input refused clearly."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

import ppy
from conftest import DEMO_APP, PPY, Server, free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(DEMO_APP, http=True) as s:
        yield s


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PPY, "bench", *args], capture_output=True, text=True, timeout=45)


def bench_json(*args: str) -> dict[str, Any]:
    out = bench(*args, "--json")
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("dialect", ["lines", "legacy"])
def test_bench_tcp_dialects_report_calls_and_percentiles(server: Server, dialect: str) -> None:
    r = bench_json("h.hello", "--url", server.url, "--dialect", dialect, "--duration", "0.5",
                   "--connections", "3", "--pipeline", "2")
    assert r["calls"] > 0 and r["errors"] == 0
    assert r["calls_per_s"] > 0
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]


def test_bench_http_dialect_and_arguments(server: Server) -> None:
    r = bench_json("h.greet", "bob", "2", "--url", server.http_url + "/rpc", "--dialect", "http",
                   "--duration", "0.5", "--connections", "2")
    assert r["calls"] > 0 and r["errors"] == 0


def test_bench_pipelining_keeps_every_call_answered(server: Server) -> None:
    r = bench_json("h.echo", "[1, 2]", "--url", server.url, "--duration", "0.5", "--connections", "2",
                   "--pipeline", "16")
    assert r["calls"] >= 32 and r["errors"] == 0


def test_bench_counts_error_replies_and_exits_non_zero(server: Server) -> None:
    out = bench("h.nope", "--url", server.url, "--duration", "0.3", "--connections", "2", "--json")
    assert out.returncode == 1
    r = json.loads(out.stdout)
    assert r["calls"] > 0 and r["errors"] == r["calls"]
    assert "-32601" in r["first_error"] and "every call failed" in out.stderr
    with ppy.Client(server.url) as client:  # the server is still healthy
        assert client.call("h.hello") == "hello, world."


def test_bench_prints_a_table(server: Server) -> None:
    out = bench("h.ahello", "--url", server.url, "--duration", "0.3", "--connections", "2")
    assert out.returncode == 0, out.stderr
    for column in ("calls/s", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        assert column in out.stdout


def test_bench_unreachable_server_is_a_clear_error() -> None:
    out = bench("h.hello", "--url", f"tcp://127.0.0.1:{free_port()}", "--duration", "0.3")
    assert out.returncode == 1
    assert "cannot load" in out.stderr and "ppy serve" in out.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--connections", "0"], "--connections must be at least 1"),
    (["--pipeline", "0"], "--pipeline must be at least 1"),
    (["--duration", "0"], "--duration must be more than 0"),
    (["--dialect", "http", "--url", "tcp://127.0.0.1:1"], "needs an http:// --url"),
    (["--url", "http://127.0.0.1:1/rpc"], "needs a tcp://host:port --url"),
])
def test_bench_bad_options_are_refused(args: list[str], message: str) -> None:
    out = bench("h.hello", *args)
    assert out.returncode == 2
    assert message in out.stderr


def _scripted_server(replies: list[bytes]) -> tuple[int, Any]:
    """A loopback server that answers the first request line with ``replies`` (then closes)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            buf = b""
            while b"\n" not in buf:
                buf += conn.recv(4096)
            conn.sendall(b"".join(replies))
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_bench_skips_server_notifications_and_fails_calls_cut_by_a_close() -> None:
    """An rpc.goaway notification is no reply (it must not be matched to a call); a close with calls in
    flight fails them as "connection closed by the server" instead of hanging the run."""
    port, thread = _scripted_server([b'{"jsonrpc":"2.0","method":"rpc.goaway"}\n',
                                     b'{"jsonrpc":"2.0","id":1,"result":"ok"}\n'])
    out = bench("h.hello", "--url", f"tcp://127.0.0.1:{port}", "--duration", "0.5", "--connections", "1",
                "--pipeline", "3", "--json")
    thread.join(5)
    r = json.loads(out.stdout)
    assert (r["calls"], r["errors"]) == (4, 3), r  # 1 answered (and replaced), then 3 in flight cut
    assert r["first_error"] == "connection closed by the server", r
