"""First burst and fairness of sync calls in thread mode (docs/performance.md quotes it).

    python bench/fairness.py

1. First burst: on a fresh server, N concurrent legacy calls (one connection
   each) of a sync function that sleeps 300 ms; wall time of the burst, then
   of a second burst.
2. Fairness of the CPU slots: two long CPU-bound calls of one function are
   running; how long a 1 ms CPU-bound call of another function takes.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

APP = '''
import time


def nap(ms: int = 300) -> int:
    time.sleep(ms / 1000)
    return ms


def _spin(ms: float) -> int:
    start = time.thread_time()
    n = 0
    while time.thread_time() - start < ms / 1000:
        n += 1
    return n


def long_crunch(ms: int = 3000) -> int:
    return _spin(ms)


def short_crunch(ms: float = 1) -> int:
    return _spin(ms)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def legacy_call(port: int, func: str, *params: object) -> object:
    body = json.dumps({"entry": "b", "func": func, "param": list(params)}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall((str(len(body)).encode() + b".").ljust(11, b"0") + body)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data[11:])


def burst(port: int, n: int) -> float:
    threads = [threading.Thread(target=legacy_call, args=(port, "nap", 300)) for _ in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "b.py").write_text(APP)
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "ppy", "serve", tmp, "--port", str(port), "--http-port", "0",
                                 "--timeout", "60"], cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.05)
            print(f"first burst:  {args.calls} x nap(300 ms): {burst(port, args.calls):.2f} s")
            print(f"second burst: {args.calls} x nap(300 ms): {burst(port, args.calls):.2f} s")
            legacy_call(port, "long_crunch", 20)  # classified: CPU-bound
            legacy_call(port, "short_crunch", 1)
            longs = [threading.Thread(target=legacy_call, args=(port, "long_crunch", 3000)) for _ in range(2)]
            for t in longs:
                t.start()
            time.sleep(0.3)
            start = time.perf_counter()
            legacy_call(port, "short_crunch", 1)
            print(f"short_crunch(1 ms) behind 2 x long_crunch(3 s) of another function: "
                  f"{(time.perf_counter() - start) * 1000:.0f} ms")
            for t in longs:
                t.join()
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
