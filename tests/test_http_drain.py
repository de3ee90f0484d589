"""SIGTERM with calls in flight: /readyz turns 503, new calls get 503, accepted calls are answered, exit 0."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from conftest import APPS, Server, recv_line

pytestmark = pytest.mark.timeout(60)


def test_readyz_flips_to_503_during_drain_and_calls_in_flight_finish() -> None:
    server = Server(APPS / "web", "--timeout", "10", http=True)
    base = server.http_url
    results: dict[str, object] = {}
    try:
        assert httpx.get(f"{base}/readyz").status_code == 200

        def slow_http() -> None:
            r = httpx.get(f"{base}/call/web/slow?seconds=1.5", timeout=20)
            results["http"] = (r.status_code, r.json())

        def slow_rpc() -> None:  # an ordinary POST /rpc: answered below ASGI (ppy.server.http.direct)
            r = httpx.post(f"{base}/rpc", json={"jsonrpc": "2.0", "method": "web.slow", "params": [1.4], "id": 7},
                           timeout=20)
            results["rpc"] = (r.status_code, r.json())

        worker = threading.Thread(target=slow_http)
        worker.start()
        rpc_worker = threading.Thread(target=slow_rpc)
        rpc_worker.start()
        tcp = server.connect(timeout=20)
        tcp.sendall(b'{"jsonrpc":"2.0","method":"web.slow","params":[1.2],"id":9}\n')
        deadline = time.monotonic() + 10
        while 'ppy_calls_in_flight 3.0' not in httpx.get(f"{base}/metrics").text:
            assert time.monotonic() < deadline, "the three slow calls never showed up in flight"
            time.sleep(0.02)

        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:
            r = httpx.get(f"{base}/readyz")
            if r.status_code == 503:
                break
            assert time.monotonic() < deadline, "readyz never turned 503"
            time.sleep(0.01)
        assert r.json() == {"status": "draining"}
        assert httpx.get(f"{base}/healthz").status_code == 200
        refused = httpx.get(f"{base}/call/web/hello")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == -32002
        refused = httpx.post(f"{base}/rpc", json={"jsonrpc": "2.0", "method": "web.hello", "id": 1})
        assert refused.status_code == 503

        assert b'"result":1.2' in recv_line(tcp, timeout=20)
        tcp.close()
        worker.join(20)
        assert results["http"] == (200, {"result": 1.5})
        rpc_worker.join(20)
        assert results["rpc"] == (200, {"jsonrpc": "2.0", "id": 7, "result": 1.4})
        assert server.proc.wait(20) == 0
        assert "finishing 3 calls in flight" in server.output()
    finally:
        server.stop()
