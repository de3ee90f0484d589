"""Flow control against a real ``ppy serve`` with default flags: clients that never read their replies,
pipelining past the per-connection window, and the send timeout.  Figures (RSS growth, canary latency)
are printed for the record, never asserted as timings.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ppy
from conftest import APPS, Server, recv_line
from probes import PeakRss, request

APP = APPS / "hostile"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(APP)
    yield srv
    assert srv.stop() == 0, srv.output()[-3000:]


def push(sock: socket.socket, data: bytes, until: float) -> int:
    """Send what the server takes before ``until`` (it stops reading a client that does not read)."""
    sock.setblocking(False)
    sent = 0
    while sent < len(data) and time.monotonic() < until:
        try:
            sent += sock.send(data[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
    return sent


def test_non_reading_flood_keeps_memory_bounded_and_others_served(server: Server) -> None:
    flood = request("rpc.ping") + b"x\n" * 150_000  # 300 KB, each line earns a ~150-byte parse error
    canary = server.connect(30)  # a client of its own, connected before the flood
    socks = [server.connect(10) for _ in range(100)]
    latencies: list[float] = []
    try:
        with PeakRss(server.proc.pid) as rss:
            until = time.monotonic() + 20
            sent = sum(push(s, flood, min(until, time.monotonic() + 0.2)) for s in socks)
            for i in range(200):
                start = time.perf_counter()
                canary.sendall(request("rpc.ping", rid=i))
                assert json.loads(recv_line(canary, timeout=30))["result"] == "pong"
                latencies.append(time.perf_counter() - start)
                time.sleep(0.01)  # pacing, not synchronisation: a ping every ~10 ms while the flood is handled
    finally:
        for s in (canary, *socks):
            s.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\nflood: {sent / 2**20:.1f} MiB sent by 100 non-reading clients; server RSS +{rss.growth / 1024:.0f} MiB "
          f"(peak); canary rpc.ping p50 {latencies[100] * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    # Before flow control this grew by gigabytes; now each connection holds at most ~1 MiB of replies.
    assert rss.growth < 400 * 1024, f"server RSS grew by {rss.growth / 1024:.0f} MiB"


def test_pipelining_1000_calls_gets_backpressure_not_overloaded(server: Server) -> None:
    with server.connect(30) as sock:
        for method, params in (("h.ok", [1]), ("h.nap", [0.02])):
            sock.sendall(b"".join(request(method, params, rid=i) for i in range(1000)))
            codes = [json.loads(recv_line(sock, timeout=30)).get("error", {}).get("code") for _ in range(1000)]
            assert codes.count(-32002) == 0, (method, codes.count(-32002))
            assert codes.count(None) == 1000


def test_async_client_gathering_1000_calls_all_succeed(server: Server) -> None:
    async def main() -> list[object]:
        async with ppy.AsyncClient(server.url) as client:
            return list(await asyncio.gather(*(client.call("h.nap", 0.01) for _ in range(1000)),
                                             return_exceptions=True))
    results = asyncio.run(main())
    failures = [r for r in results if isinstance(r, BaseException)]
    print(f"\nAsyncClient gather 1000: {1000 - len(failures)} ok, {len(failures)} failed")
    assert not failures, failures[:3]


def test_send_timeout_aborts_a_client_that_stops_reading() -> None:
    with Server(APP, "--send-timeout", "1") as srv, srv.connect(10) as sock:
        push(sock, request("rpc.ping") + b"x\n" * 150_000, time.monotonic() + 3)
        deadline = time.monotonic() + 30
        while "--send-timeout" not in srv.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "aborting connection" in srv.output()
        sock.setblocking(True)
        sock.settimeout(10)
        with pytest.raises(ConnectionResetError):
            while sock.recv(1 << 20):
                pass


def test_wrong_tokens_close_the_connection(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token")
    with Server(APP, "--token-file", str(token)) as srv, srv.connect(10) as sock:
        sock.sendall(b"".join(request("rpc.auth", [f"guess-{i}"], rid=i) for i in range(50)))
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        replies = [json.loads(line) for line in data.splitlines()]
        assert len(replies) == 10 and all(r["error"]["code"] == -32003 for r in replies)
        deadline = time.monotonic() + 10
        while "wrong tokens" not in srv.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "closing connection from" in srv.output()
