"""Streaming figures (docs/streaming.md): items/s, memory under a stalled reader, cancel latency.

    .venv/bin/python bench/stream.py [--items 300000] [--stall 10]

Starts one ``ppy serve`` on a throw-away app folder and measures, in the same run:

* ``h.hello`` calls/s at 32 connections x 16 pipelined (``ppy bench``), the reference point;
* items/s of a sync and of an async generator of small items (an int each) streamed over one
  connection with ``"stream": true`` (the client counts lines as fast as it can read them);
* the server's RSS (``/proc/PID/status``) while a client reads nothing from an endless generator
  of 10 KB items for ``--stall`` seconds;
* the time from sending ``rpc.cancel`` to the generator's ``finally`` (it writes
  ``time.time()`` to a file), sync and async, over 20 runs each.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

APP = '''
import asyncio, time

def hello():
    return "hello, world."

def count(n: int):
    yield from range(n)

async def acount(n: int):
    for i in range(n):
        yield i

def forever(mark: str = "", size: int = 10):
    payload = "x" * size
    try:
        while True:
            yield payload
    finally:
        if mark:
            with open(mark, "w") as f:
                f.write(repr(time.time()))

async def aforever(mark: str = "", size: int = 10):
    payload = "x" * size
    try:
        while True:
            await asyncio.sleep(0)
            yield payload
    finally:
        if mark:
            with open(mark, "w") as f:
                f.write(repr(time.time()))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def request(sock: socket.socket, **fields: Any) -> None:
    sock.sendall(json.dumps({"jsonrpc": "2.0", **fields}).encode() + b"\n")


def items_per_second(port: int, method: str, n: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        request(sock, method=method, params=[n], id=1, stream=True)
        lines = 0
        while lines < n + 1:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("server closed the connection")
            lines += chunk.count(b"\n")
        return n / (time.perf_counter() - start)


def stalled_reader(port: int, pid: int, seconds: float) -> dict[str, int]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        before = rss_kb(pid)
        request(sock, method="b.forever", params={"size": 10_000}, id=1, stream=True)
        peak = before
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak = max(peak, rss_kb(pid))
            time.sleep(0.1)
        return {"rss_before_kib": before, "rss_peak_kib": peak, "rss_growth_kib": peak - before}


def cancel_latency(port: int, method: str, tmp: Path, runs: int = 20) -> dict[str, float]:
    samples = []
    for i in range(runs):
        mark = tmp / f"mark-{method}-{i}"
        with socket.create_connection(("127.0.0.1", port)) as sock:
            reader = sock.makefile("rb")
            request(sock, method=method, params={"mark": str(mark)}, id=1, stream=True)
            reader.readline()
            sent = time.time()
            request(sock, method="rpc.cancel", params={"id": 1})
            while b'"id":1,' not in reader.readline():
                pass
        deadline = time.monotonic() + 5
        while not (mark.exists() and mark.read_text()) and time.monotonic() < deadline:
            time.sleep(0.0005)
        samples.append((float(mark.read_text()) - sent) * 1000)
    return {"median_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--stall", type=float, default=10.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ppy-stream-bench-"))
    app = tmp / "app"
    app.mkdir()
    (app / "b.py").write_text(APP)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ppy", "serve", str(app), "--port", str(port),
                               "--http-port", "0", "--timeout", "120", "--no-access-log"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        hello = json.loads(subprocess.run(
            [sys.executable, "-m", "ppy", "bench", "b.hello", "--url", f"tcp://127.0.0.1:{port}",
             "--connections", "32", "--pipeline", "16", "--duration", "5", "--json", "--quiet"],
            capture_output=True, text=True, check=True).stdout)
        sync_rate = items_per_second(port, "b.count", args.items)
        async_rate = items_per_second(port, "b.acount", args.items)
        calls = float(hello.get("calls_per_s") or hello.get("rate") or 0)
        result = {
            "hello_calls_per_s_32x16": round(calls),
            "sync_items_per_s": round(sync_rate),
            "async_items_per_s": round(async_rate),
            "sync_vs_hello": round(sync_rate / calls, 2) if calls else None,
            "async_vs_hello": round(async_rate / calls, 2) if calls else None,
            "stalled_reader": stalled_reader(port, server.pid, args.stall),
            "cancel_to_finally_sync": cancel_latency(port, "b.forever", tmp),
            "cancel_to_finally_async": cancel_latency(port, "b.aforever", tmp),
        }
        print(json.dumps(result, indent=2))
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
