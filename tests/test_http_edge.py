"""The HTTP/1.1 edge bounds what one connection costs: head size, pipelining, whole-request deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import APPS, Server
from probes import PeakRss, rss_kib

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    server = Server(APPS / "web", "--request-timeout", "2", "--send-timeout", "2", http=True)
    yield server
    server.stop()


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.http_port), timeout=10)


def _read_until_closed(sock: socket.socket, limit: float = 15) -> bytes:
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _send_until_refused(sock: socket.socket, head: bytes, filler: bytes, total: int) -> int:
    """Send ``head`` then ``filler`` until ``total`` bytes or until the server stops taking them."""
    sent = 0
    sock.sendall(head)
    sock.settimeout(2)
    try:
        while sent < total:
            sent += sock.send(filler)
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass
    return sent


def test_oversized_head_gets_431_and_close_without_growing_memory(server: Server) -> None:
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    with PeakRss(server.proc.pid) as rss, _connect(server) as sock:
        _send_until_refused(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", line * 64, 64 << 20)
        data = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    assert b"connection: close" in data.lower()
    assert b"64 KiB" in data
    assert rss.growth < 32 * 1024, f"RSS grew {rss.growth} KiB"


def test_more_than_100_headers_gets_431(server: Server) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        data = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 431 ")
    assert b"100 headers" in data


def test_100_headers_are_fine(server: Server) -> None:
    headers = {f"x-h{i}": "v" for i in range(94)}  # + httpx's own 5 or 6
    assert httpx.get(f"{server.http_url}/healthz", headers=headers).status_code == 200


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    body = b'{"jsonrpc":"2.0","method":"web.hello","id":7}'
    post = (b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + post
                     + b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = _read_until_closed(sock)
    assert data.count(b"HTTP/1.1 ") == 3
    first, second, third = (data.index(s) for s in (b"HTTP/1.1 200", b'"id":7', b"HTTP/1.1 404"))
    assert first < second < third


def test_pipelining_unread_replies_keeps_memory_bounded(server: Server) -> None:
    """20 connections each send 1 MiB of pipelined requests and never read a reply."""
    flood = b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2000
    socks = [_connect(server) for _ in range(20)]
    try:
        with PeakRss(server.proc.pid) as rss:
            for sock in socks:
                sock.setblocking(False)
            sent = [0] * len(socks)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and min(sent) < (1 << 20):
                progress = False
                for i, sock in enumerate(socks):
                    if sent[i] >= (1 << 20):
                        continue
                    try:
                        sent[i] += sock.send(flood)
                        progress = True
                    except BlockingIOError:
                        pass
                if not progress:
                    time.sleep(0.05)
            # the server answers what it read until the unread replies fill the socket buffers
            time.sleep(0.5)
            canary = httpx.get(f"{server.http_url}/healthz", timeout=5)
        assert canary.status_code == 200
        assert rss.growth < 64 * 1024, f"RSS grew {rss.growth} KiB for {sum(sent)} bytes sent"
    finally:
        for sock in socks:
            sock.close()


def test_trickled_body_is_cut_by_the_whole_request_deadline(server: Server) -> None:
    """One body byte every 0.2 s does not extend the 2 s deadline that started with the first byte."""
    with _connect(server) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        sock.settimeout(0.2)
        data = b""
        while time.monotonic() - start < 15:
            try:
                sock.sendall(b" ")
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        took = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert b"connection: close" in data.lower()
    assert took < 8, f"the trickling connection lived {took:.1f} s"


def test_reply_that_leaves_the_body_unread_closes(server: Server) -> None:
    """A route that does not read the body (or refuses it) answers, says Connection: close, and closes."""
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\nx")
        data = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in data.lower()
    with _connect(server) as sock:
        sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000000\r\n\r\n{")
        data = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in data.lower()


def test_expect_100_continue(server: Server) -> None:
    body = b'{"jsonrpc":"2.0","method":"web.hello","id":1}'
    with _connect(server) as sock:
        sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert b"hello, world." in sock.recv(65536)


def test_server_healthy_afterwards(server: Server) -> None:
    assert httpx.get(f"{server.http_url}/call/web/hello").json() == {"result": "hello, world."}
    assert rss_kib(server.proc.pid) > 0


def _http_connections(server: Server) -> float:
    text = httpx.get(f"{server.http_url}/metrics", headers={"Connection": "close"}).text
    line = next(x for x in text.splitlines() if x.startswith('ppy_connections_open{dialect="http"}'))
    return float(line.split()[-1]) - 1  # minus the scrape's own connection


def test_client_that_never_reads_its_replies_is_dropped(server: Server) -> None:
    """Pipelined requests with large replies, none read: the server stops handling them once its
    send buffer is full, and drops the connection after the send deadline (--send-timeout, 2 s here)."""
    with _connect(server) as sock:
        sock.setblocking(False)
        request = b"GET /openrpc.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 200
        try:
            for _ in range(50):
                sock.send(request)
        except BlockingIOError:
            pass
        deadline = time.monotonic() + 20
        while _http_connections(server) >= 1:
            assert time.monotonic() < deadline, "the non-reading client was never dropped"
            time.sleep(0.2)


def test_connections_past_max_connections_get_503_and_close() -> None:
    with Server(APPS / "web", "--max-connections", "2", http=True) as small:
        held: list[socket.socket] = []
        try:
            # Each is served (and so counted) before the next arrives: by then the server has also seen
            # the readiness probe's connection close (accepted in the same wake-up, it would count).
            for _ in range(2):
                sock = socket.create_connection(("127.0.0.1", small.http_port), timeout=10)
                held.append(sock)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            with socket.create_connection(("127.0.0.1", small.http_port), timeout=10) as extra:
                data = _read_until_closed(extra)
            assert data.startswith(b"HTTP/1.1 503 ") and b"--max-connections" in data
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        while True:  # the slots free up when the held connections close
            try:
                if httpx.get(f"{small.http_url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
