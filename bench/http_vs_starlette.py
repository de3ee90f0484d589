"""HTTP calls/s: ppy's ``POST /rpc`` against a bare uvicorn + Starlette JSON endpoint, same machine, same load.

Usage: .venv/bin/python bench/http_vs_starlette.py [--runs 5] [--seconds 5] [--connections 32]

Both servers run on CPU 0 (``taskset -c 0``), the load generator ``wrk`` (Debian package; ``apt-get
install -y wrk``) on CPU 1, over loopback only.  Each run measures every target once, in turn; the
table shows the median of the runs and the ratio to the baseline.

Targets:
  baseline  POST /rpc  bare Starlette route: ``await request.json()``, call ``hello()``, ``JSONResponse``
            (uvicorn with uvloop + httptools, access log off) — the least an ASGI JSON endpoint does;
  ppy       POST /rpc  h.hello   (sync function: ppy's thread pool, the full JSON-RPC model, limits, metrics)
  ppy       POST /rpc  h.ahello  (async def: runs on the event loop)
  ppy       GET  /call/h/hello
ppy runs with ``--no-access-log`` (the baseline logs nothing either).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = '{"jsonrpc":"2.0","method":"%s","params":[],"id":1}'


def baseline_app(port: int) -> None:
    """The yardstick: one Starlette route answering JSON-RPC for hello(), nothing else."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def hello() -> str:
        return "hello, world."

    async def rpc(request: Request) -> JSONResponse:
        req = await request.json()
        return JSONResponse({"jsonrpc": "2.0", "id": req.get("id"), "result": hello()})

    app = Starlette(routes=[Route("/rpc", rpc, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False,
                log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on port {port} after {timeout} s")


def check(url: str, method: str, body: str | None) -> None:
    """One request with the same shape as the load, to be sure every target really answers."""
    import httpx

    r = httpx.request(method, url, content=body, headers={"Content-Type": "application/json"}, timeout=5)
    if r.status_code != 200 or "hello, world." not in r.text:
        raise SystemExit(f"{url} answered {r.status_code} {r.text[:200]}")


def wrk(url: str, method: str, body: str | None, seconds: float, connections: int,
        script_dir: Path) -> dict[str, float]:
    script = script_dir / f"{abs(hash((url, method, body)))}.lua"
    lines = [f'wrk.method = "{method}"', 'wrk.headers["Content-Type"] = "application/json"']
    if body is not None:
        lines.append("wrk.body = '" + body + "'")
    script.write_text("\n".join(lines) + "\n")
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script),
           url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses during the run:\n{out}")
    p50 = _ms(re.search(r"\s50%\s+([\d.]+)(us|ms|s)", out))
    p99 = _ms(re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out))
    return {"rps": rps, "p50": p50, "p99": p99}


def _ms(match: re.Match[str] | None) -> float:
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--baseline-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        baseline_app(args.baseline_server)
        return 0
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed; apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'}")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 CPUs: the servers on CPU 0, wrk on CPU 1")

    base_port, ppy_port, ppy_http = free_port(), free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--baseline-server", str(base_port)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "ppy", "serve", str(ROOT / "src/ppy/demo_app"),
                          "--port", str(ppy_port), "--http-port", str(ppy_http), "--no-access-log"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    targets = [
        ("baseline  POST /rpc hello", f"http://127.0.0.1:{base_port}/rpc", "POST", BODY % "h.hello"),
        ("ppy       POST /rpc h.hello", f"http://127.0.0.1:{ppy_http}/rpc", "POST", BODY % "h.hello"),
        ("ppy       POST /rpc h.ahello", f"http://127.0.0.1:{ppy_http}/rpc", "POST", BODY % "h.ahello"),
        ("ppy       GET /call/h/hello", f"http://127.0.0.1:{ppy_http}/call/h/hello", "GET", None),
    ]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in targets}
    try:
        wait_port(base_port, procs[0])
        wait_port(ppy_http, procs[1])
        with tempfile.TemporaryDirectory() as tmp:
            for _name, url, method, body in targets:
                check(url, method, body)
                wrk(url, method, body, 1.0, args.connections, Path(tmp))  # warm-up
            for run in range(args.runs):
                for name, url, method, body in targets:
                    results[name].append(wrk(url, method, body, args.seconds, args.connections, Path(tmp)))
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    baseline = results[targets[0][0]]
    print(f"\nHTTP calls/s, median of {args.runs} runs of {args.seconds:g} s, wrk -t1 -c{args.connections} "
          "(server on CPU 0, wrk on CPU 1)")
    print("'vs baseline' is the median of per-run ratios: each run measures every target back to back, so\n"
          "load that other processes put on the machine hits both sides of a ratio alike.\n")
    print("'best' is the fastest run of each target: the least disturbed figure on a busy machine.\n")
    print(f"{'target':32} {'calls/s':>10} {'vs baseline':>12} {'best':>8} {'best vs':>8} {'p50 ms':>8} {'p99 ms':>8}"
          "   runs (calls/s)")
    best_base = max(b["rps"] for b in baseline)
    for name, *_ in targets:
        runs = results[name]
        rps = statistics.median(r["rps"] for r in runs)
        ratio = statistics.median(r["rps"] / b["rps"] for r, b in zip(runs, baseline, strict=True))
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        every = " ".join(f"{r['rps']:.0f}" for r in runs)
        best = max(r["rps"] for r in runs)
        print(f"{name:32} {rps:10.0f} {ratio:11.2f}x {best:8.0f} {best / best_base:7.2f}x {p50:8.2f} {p99:8.2f}"
              f"   {every}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
