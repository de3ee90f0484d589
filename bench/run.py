"""`make bench`: ppy against its baselines, in one run, on pinned cores; writes BENCHMARKS.md.

    python bench/run.py                 # the whole matrix (5 x 4 s per point), ~16 minutes
    python bench/run.py --smoke         # one 1 s point per dialect, for CI: checks it runs, not speed
    python bench/run.py --only 'legacy' # only the points whose label matches a regex

Each point is run ``--repeats`` times, in rounds (every server stays up; each
round measures every point once, ppy next to its baselines); we report the median calls/s and its
spread (min..max as ± % of the median), the median p50/p99, the worst max
latency, and the server's CPU time per call.  Ratios are between medians of
the same run, so a slower or faster machine changes the numbers, not the
ratios.  Raw results go to bench/results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import re
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procs
import report
import targets

KiB = 1024
DEMO = procs.ROOT / "src" / "ppy" / "demo_app"
ECHO_1K = json.dumps(["x" * KiB])
ECHO_64K = json.dumps(["x" * (64 * KiB)])


@dataclass
class Point:
    server: str
    dialect: str
    method: str
    connections: int
    pipeline: int = 1
    params: str = "[]"
    workload: str = ""
    pinned: bool = True
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        pipe = f"x{self.pipeline}" if self.pipeline > 1 else ""
        return f"{self.server} {self.dialect} {self.workload or self.method} c{self.connections}{pipe}"


def matrix(http: bool) -> list[Point]:
    """Every point of the run, grouped by server (each server is started once)."""
    p: list[Point] = []
    for conns, pipe in ((1, 1), (32, 1), (32, 16)):
        p.append(Point("ppy", "lines", "h.hello", conns, pipe, workload="hello (sync)"))
        p.append(Point("ppy", "lines", "h.ahello", conns, pipe, workload="hello (async)"))
    p += [
        Point("ppy", "lines", "h.echo", 32, 1, ECHO_1K, "echo 1 KiB"),
        Point("ppy", "lines", "h.echo", 32, 16, ECHO_1K, "echo 1 KiB"),
        Point("ppy", "lines", "h.echo", 32, 1, ECHO_64K, "echo 64 KiB"),
        Point("ppy", "lines", "h.echo", 32, 16, ECHO_64K, "echo 64 KiB"),
        Point("ppy", "lines", "h.cpu", 32, 1, "[100000]", "cpu(100000)"),
        Point("ppy", "lines", "h.sleep", 64, 1, "[10]", "sleep(10 ms)"),
        Point("ppy", "legacy", "h.hello", 1, workload="hello (sync)"),
        Point("ppy", "legacy", "h.hello", 32, workload="hello (sync)"),
    ]
    if http:
        p += [Point("ppy", "http", "h.hello", 1, workload="hello (sync)"),
              Point("ppy", "http", "h.hello", 32, workload="hello (sync)"),
              Point("ppy", "http", "h.ahello", 32, workload="hello (async)")]
    if procs.python27():
        p.append(Point("seed-py27", "legacy", "h.hello", 32, workload="hello (sync)"))
    p += [
        Point("seed", "legacy", "h.hello", 1, workload="hello (sync)"),
        Point("seed", "legacy", "h.hello", 32, workload="hello (sync)"),
        Point("bare-stdlib", "lines", "h.hello", 1, workload="hello (sync)"),
        Point("bare-stdlib", "lines", "h.ahello", 32, workload="hello (async)"),
        Point("bare-stdlib", "lines", "h.hello", 32, workload="hello (sync)"),
        Point("bare-stdlib", "lines", "h.hello", 32, 16, workload="hello (sync)"),
        Point("bare-msgspec", "lines", "h.hello", 32, 16, workload="hello (sync)"),
        Point("bare-orjson", "lines", "h.hello", 32, 16, workload="hello (sync)"),
        Point("bare-pool64", "lines", "h.hello", 32, workload="hello (sync)"),
        Point("bare-pool64", "lines", "h.sleep", 64, 1, "[10]", "sleep(10 ms)"),
        Point("starlette", "http", "h.hello", 1, workload="hello (sync)"),
        Point("starlette", "http", "h.hello", 32, workload="hello (sync)"),
        Point("c-floor", "lines", "h.hello", 1, workload="hello (sync)"),
        Point("c-floor", "lines", "h.hello", 32, workload="hello (sync)"),
        Point("c-floor", "lines", "h.hello", 32, 16, workload="hello (sync)"),
        Point("c-floor", "legacy", "h.hello", 32, workload="hello (sync)"),
        Point("c-floor", "http", "h.hello", 32, workload="hello (sync)"),
    ]
    return p


def smoke_matrix(http: bool) -> list[Point]:
    p = [Point("ppy", "lines", "h.hello", 2, 2, workload="hello (sync)"),
         Point("ppy", "legacy", "h.hello", 2, workload="hello (sync)"),
         Point("c-floor", "lines", "h.hello", 2, 2, workload="hello (sync)")]
    if http:
        p.insert(2, Point("ppy", "http", "h.hello", 2, workload="hello (sync)"))
    return p


def has_http() -> bool:
    return importlib.util.find_spec("ppy.server.http") is not None


def ppy_argv(port: int, http_port: int, *extra: str) -> list[str]:
    """ppy with its default flags (what a user gets), plus only what a point documents it needs."""
    return [procs.python(), "-m", "ppy", "serve", str(DEMO), "--port", str(port), "--http-port", str(http_port),
            *extra]


def start(name: str, http: bool) -> tuple[procs.Server, dict[str, int]]:
    """Start one server; its ports by dialect."""
    port = procs.free_port()
    base = procs.BENCH / "baselines"
    py = procs.python()
    if name == "ppy":
        http_port = procs.free_port() if http else 0
        server = procs.Server(name, ppy_argv(port, http_port), port, wait_ports=(http_port,) if http else ())
        return server, {"lines": port, "legacy": port, "http": http_port}
    argv = {
        "seed": [py, str(base / "seed_server.py"), str(port)],
        "seed-py27": [procs.python27() or "python2.7", str(base / "seed_original.py27"), str(port),
                      str(procs.ROOT / "tests" / "apps" / "seed")],
        "bare-stdlib": [py, str(base / "uvloop_lines.py"), str(port)],
        "bare-msgspec": [py, str(base / "uvloop_lines.py"), str(port), "--json", "msgspec"],
        "bare-orjson": [py, str(base / "uvloop_lines.py"), str(port), "--json", "orjson"],
        "bare-pool64": [py, str(base / "uvloop_lines.py"), str(port), "--pool", "64"],
        "starlette": [py, str(base / "starlette_app.py"), str(port)],
        "c-floor": [str(procs.BUILD / "cserver"), str(port)],
    }[name]
    return procs.Server(name, argv, port), {"lines": port, "legacy": port, "http": port}


def measure(server: procs.Server, port: int, point: Point, duration: float, warmup: float) -> dict[str, Any]:
    cpu0 = server.cpu_seconds()
    t0 = time.monotonic()
    result = procs.loadgen(port, dialect=point.dialect, connections=point.connections, pipeline=point.pipeline,
                           duration=duration, warmup=warmup, method=point.method, params=point.params,
                           core=procs.CLIENT_CORE if point.pinned else None)
    wall = time.monotonic() - t0
    cpu = server.cpu_seconds() - cpu0
    # CPU over the whole loadgen run (warm-up included) per call over that same span, estimated from the rate.
    calls_in_span = result["rps"] * wall
    result["cpu_us_per_call"] = round(cpu / calls_in_span * 1e6, 2) if calls_in_span else None
    result["server_cpu_util"] = round(cpu / wall, 3)
    return result


def run_points(points: list[Point], http: bool, duration: float, warmup: float, repeats: int) -> None:
    """Every server is started first and stays up; then each round measures every point once.

    Rounds, not all repeats of one server in a row: on a shared machine the load of the neighbours
    drifts over minutes, and a ratio between two servers measured minutes apart carried that drift
    (0.71x and 0.98x for the same two servers in two runs, docs/performance.md).  Interleaved, and
    with the points of one workload measured back to back (ppy next to its baselines), each median
    comes from the same stretches of time as the median it is divided by.
    """
    order = sorted(points, key=lambda p: (p.dialect, p.method, p.params, p.connections, p.pipeline))
    with contextlib.ExitStack() as stack:
        started: dict[str, tuple[procs.Server, dict[str, int]]] = {}
        for point in points:
            if point.server not in started:
                server, ports = start(point.server, http)
                started[point.server] = stack.enter_context(server), ports
        for round_ in range(repeats):
            for point in order:
                server, ports = started[point.server]
                point.runs.append(measure(server, ports[point.dialect], point, duration, warmup))
                if round_ == repeats - 1:
                    print(f"  {report.line(point)}", flush=True)


def open_idle(port: int, count: int) -> list[socket.socket]:
    """Persistent lines connections that made one call (rpc.ping) and then stay idle."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b'{"jsonrpc":"2.0","method":"rpc.ping","id":1}\n')
        socks.append(s)
    for s in socks:
        if not s.recv(256).endswith(b"\n"):
            raise RuntimeError("an idle connection's rpc.ping got no reply")
    return socks


def run_idle(duration: float, warmup: float, repeats: int, count: int) -> dict[str, Any]:
    """Target 9: RSS of `count` idle connections, and an active client's p99 with and without them."""
    limit = procs.raise_fd_limit()
    count = min(count, limit - 200)
    point = Point("ppy", "lines", "h.hello", 1, workload="hello (sync)")
    port = procs.free_port()
    # 10,000 idle connections need more than the default --max-connections 1024: the point measures their cost.
    with procs.Server("ppy-idle", ppy_argv(port, 0, "--max-connections", str(count + 100)), port) as server:
        quiet = [measure(server, port, point, duration, warmup) for _ in range(repeats)]
        rss0 = server.rss_mb()
        socks = open_idle(port, count)
        try:
            time.sleep(0.5)
            rss1 = server.rss_mb()
            busy = [measure(server, port, point, duration, warmup) for _ in range(repeats)]
        finally:
            for s in socks:
                s.close()
    p99 = statistics.median(r["p99_us"] for r in quiet)
    p99_idle = statistics.median(r["p99_us"] for r in busy)
    return {"connections": count, "rss_before_mb": round(rss0, 1), "rss_after_mb": round(rss1, 1),
            "rss_delta_mb": round(rss1 - rss0, 1), "p99_us": p99, "p99_idle_us": p99_idle,
            "p99_ratio": round(p99_idle / p99, 2) if p99 else None, "quiet": quiet, "busy": busy}


def run_workers(duration: float, warmup: float, repeats: int) -> dict[str, Any]:
    """Target 7: cpu(100000), 32 connections, unpinned, --workers 2 against one worker."""
    out: dict[str, Any] = {}
    for workers in (1, 2):
        point = Point("ppy", "lines", "h.cpu", 32, params="[100000]", workload="cpu(100000)", pinned=False)
        port = procs.free_port()
        try:
            server = procs.Server(f"ppy-w{workers}", ppy_argv(port, 0, "--workers", str(workers)), port, core=None)
        except RuntimeError as exc:
            out[f"workers{workers}"] = {"error": str(exc).splitlines()[-1]}
            continue
        with server:
            point.runs = [measure(server, port, point, duration, warmup) for _ in range(repeats)]
        out[f"workers{workers}"] = {"rps": report.median(point, "rps"), "runs": point.runs}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per repeat (4: the run takes ~16 min)")
    ap.add_argument("--warmup", type=float, default=0.5, help="seconds of load before measuring")
    # Five: on a shared machine one point's repeats spread by +-10-15%; the median of three moved a ratio
    # across its target (1.19x and 1.35x for target 4 in two runs of the same commit, docs/performance.md).
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--idle", type=int, default=10000, help="idle connections for target 9 (0 skips)")
    ap.add_argument("--only", help="run only points whose label matches this regex (skips targets 7 and 9)")
    ap.add_argument("--smoke", action="store_true", help="one short point per dialect; checks that it all runs")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for BENCHMARKS.md and the chart (default: the repo; bench/build/smoke with --smoke)")
    ap.add_argument("--json", type=Path, default=None, help="raw results (default: bench/results.json)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = procs.BUILD / "smoke" if args.smoke else procs.ROOT
    procs.build()
    procs.raise_fd_limit()
    http = has_http()
    started = time.monotonic()
    if args.smoke:
        args.duration, args.warmup, args.repeats = 1.0, 0.2, 1
        points = smoke_matrix(http)
    else:
        points = matrix(http)
        if args.only:
            points = [p for p in points if re.search(args.only, p.label)]
    print(f"bench: {len(points)} points x {args.repeats} x {args.duration:g} s", flush=True)
    run_points(points, http, args.duration, args.warmup, args.repeats)
    extra: dict[str, Any] = {}
    if not args.smoke and not args.only:
        print("bench: --workers 1 and 2, cpu(100000), unpinned", flush=True)
        extra["workers"] = run_workers(args.duration, args.warmup, args.repeats)
        if args.idle:
            print(f"bench: {args.idle} idle connections", flush=True)
            extra["idle"] = run_idle(args.duration, args.warmup, args.repeats, args.idle)
    results = {"machine": report.machine(), "duration": args.duration, "warmup": args.warmup,
               "repeats": args.repeats, "http": http, "elapsed_s": round(time.monotonic() - started, 1),
               "points": [asdict(p) | {"label": p.label} for p in points], **extra}
    results["targets"] = targets.evaluate(results)
    json_path = args.json or (args.out / "results.json" if args.smoke else args.out / "bench" / "results.json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1))
    md = report.write(results, args.out, chart=not args.smoke)
    print(f"bench: wrote {md} and {json_path} in {results['elapsed_s']:.0f} s", flush=True)
    for t in results["targets"]:
        print(f"  target {t['n']}: {t['status']:4} {t['measured']}  ({t['goal']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
