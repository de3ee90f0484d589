"""Measure what ``--workers`` and ``--isolate`` cost and buy (docs/deploy.md, docs/isolation.md quote it).

    python bench/workers.py                # ~1 minute
    python bench/workers.py --seconds 3    # shorter throughput runs

1. CPU-bound throughput with ``--workers 1`` and ``--workers 2``: 8 client
   threads with persistent connections call ``h.cpu`` (pure-Python loop,
   holds the GIL) for a fixed time; calls/s and the ratio.
2. Respawn times: ``--isolate`` workers killed by ``os._exit`` calls, and
   ``--workers`` children killed with SIGKILL; p50/p99 of the durations the
   server logs ("replaced by ... in N ms": from the death to the successor
   being ready).  Children are killed 10.5 s apart, past the supervisor's
   "died young" window, so the figures hold no back-off delay.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import ppy  # noqa: E402

DEMO = ROOT / "src" / "ppy" / "demo_app"
ISO = ROOT / "tests" / "apps" / "isolation"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    def __init__(self, app: Path, *args: str) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="ppy-bench-", suffix=".log")[1])
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ppy", "serve", str(app), "--port", str(self.port),
                                          "--http-port", "0", *args], stdout=out, stderr=subprocess.STDOUT,
                                         cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with ppy.Client(self.url, timeout=5) as c:
                    c.call("rpc.ping")
                return
            except ppy.ClientError:
                time.sleep(0.1)
        raise RuntimeError(self.log.read_text())

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def respawn_ms(self) -> list[float]:
        return [float(m) for m in re.findall(r"replaced by (?:pid )?\d+ in (\d+) ms", self.log.read_text())]


def throughput(workers: int, seconds: float, n: int) -> float:
    server = Serve(DEMO, "--workers", str(workers))
    count = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        nonlocal count
        mine = 0
        with ppy.Client(server.url, timeout=30) as c:
            while time.monotonic() < stop:
                c.call("h.cpu", n)
                mine += 1
        with lock:
            count += mine

    try:
        with ppy.Client(server.url) as c:  # warm up every worker a little
            for _ in range(10):
                c.call("h.cpu", n)
        start = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return count / (time.monotonic() - start)
    finally:
        server.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def isolate_respawns(count: int) -> list[float]:
    server = Serve(ISO, "--isolate", "--pool-size", "2", "--timeout", "10")
    try:
        with ppy.Client(server.url, timeout=30) as c:
            for _ in range(count):
                try:
                    c.call("iso.exit3")
                except ppy.RemoteWorkerCrashed:
                    pass
                time.sleep(0.05)
        deadline = time.monotonic() + 20
        while len(server.respawn_ms()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return server.respawn_ms()
    finally:
        server.stop()


def worker_respawns(count: int) -> list[float]:
    server = Serve(ISO, "--workers", "2")
    try:
        for i in range(count):
            kids = [int(p) for p in subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True,
                                                    text=True).stdout.split()]
            os.kill(kids[i % len(kids)], signal.SIGKILL)
            deadline = time.monotonic() + 30
            while len(server.respawn_ms()) < i + 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(10.5)  # a child that dies within 10 s of starting is restarted after a back-off
        return server.respawn_ms()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--n", type=int, default=200_000, help="h.cpu argument (work per call)")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    one = throughput(1, args.seconds, args.n)
    two = throughput(2, args.seconds, args.n)
    print(f"cpu-bound h.cpu({args.n}): --workers 1: {one:.1f} calls/s, --workers 2: {two:.1f} calls/s, "
          f"ratio {two / one:.2f}x")
    iso = isolate_respawns(40)
    print(f"--isolate respawn ({len(iso)} crashes): p50 {percentile(iso, 0.5):.0f} ms, "
          f"p99 {percentile(iso, 0.99):.0f} ms, mean {statistics.mean(iso):.0f} ms")
    wrk = worker_respawns(4)
    print(f"--workers respawn ({len(wrk)} SIGKILLs): p50 {percentile(wrk, 0.5):.0f} ms, "
          f"p99 {percentile(wrk, 0.99):.0f} ms")


if __name__ == "__main__":
    main()
