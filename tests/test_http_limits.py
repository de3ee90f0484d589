"""Every HTTP wait is bounded: connect-and-say-nothing, trickled headers, a stalled body."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import APPS, Server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    server = Server(APPS / "web", "--idle-timeout", "1", "--request-timeout", "1", http=True)
    yield server
    server.stop()


def _closed_within(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Read until the server closes; return what it sent and how long that took (fails past ``limit``)."""
    sock.settimeout(limit)
    start = time.monotonic()
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.http_port), timeout=5)


def test_silent_connection_is_closed_after_idle_timeout(server: Server) -> None:
    with _connect(server) as sock:
        data, took = _closed_within(sock, 10)
    assert data == b""
    assert 0.5 < took < 8


def test_trickled_headers_are_cut_off_by_request_timeout(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(3):  # a byte-at-a-time client: each byte would reset a naive idle timer
            time.sleep(0.4)
            try:
                sock.sendall(b"X")
            except OSError:
                break
        data, _ = _closed_within(sock, 10)
    assert b"200" not in data


def test_stalled_body_gets_408(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"jsonrpc\":")
        data, _ = _closed_within(sock, 10)
    assert data.startswith(b"HTTP/1.1 408")
    assert b"--request-timeout" in data


def test_server_healthy_after_slow_clients(server: Server) -> None:
    assert httpx.get(f"{server.http_url}/call/web/hello").json() == {"result": "hello, world."}
    limits = httpx.get(f"{server.http_url}/metrics").text
    assert 'ppy_limit_trips_total{limit="request_timeout"} 1.0' in limits
