"""The nine speed targets of issue 6, each evaluated from the medians of one run.

A target whose points were not measured in this run (``--only``, no HTTP
front end, no ``--workers``) is reported as ``n/a`` with the reason, never
as met.
"""

from __future__ import annotations

import statistics
from typing import Any


def _median(point: dict[str, Any], key: str) -> float:
    return float(statistics.median(r[key] for r in point["runs"]))


def _find(results: dict[str, Any], server: str, dialect: str, method: str, conns: int, pipe: int = 1,
          params: str | None = None) -> dict[str, Any] | None:
    for p in results["points"]:
        if (p["server"], p["dialect"], p["method"], p["connections"], p["pipeline"]) == (
                server, dialect, method, conns, pipe) and p["runs"] and (params is None or p["params"] == params):
            return p
    return None


def _ratio(n: int, goal: str, need: float, ours: dict[str, Any] | None, base: dict[str, Any] | None,
           what: str) -> dict[str, Any]:
    if ours is None or base is None:
        return {"n": n, "goal": goal, "status": "n/a", "measured": f"not measured in this run ({what})"}
    a, b = _median(ours, "rps"), _median(base, "rps")
    ratio = a / b if b else 0.0
    return {"n": n, "goal": goal, "status": "met" if ratio >= need else "MISS", "ratio": round(ratio, 2),
            "measured": f"{ratio:.2f}x ({a:,.0f} vs {b:,.0f} calls/s)"}


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    f = lambda *a, **k: _find(results, *a, **k)  # noqa: E731
    out = [
        _ratio(1, "lines, async def hello, 32 conns: >= 1.0x bare uvloop stdlib-json", 1.0,
               f("ppy", "lines", "h.ahello", 32), f("bare-stdlib", "lines", "h.ahello", 32), "lines c32"),
        _ratio(2, "lines, sync def hello, 32 conns: >= 1.6x the 64-thread-pool baseline", 1.6,
               f("ppy", "lines", "h.hello", 32), f("bare-pool64", "lines", "h.hello", 32), "pool c32"),
        _ratio(3, "lines, hello, 32 conns x 16 pipelined: >= 1.5x bare stdlib-json", 1.5,
               f("ppy", "lines", "h.hello", 32, 16), f("bare-stdlib", "lines", "h.hello", 32, 16), "c32x16"),
    ]
    legacy, seed = f("ppy", "legacy", "h.hello", 32), f("seed", "legacy", "h.hello", 32)
    t4 = _ratio(4, "legacy, one connection per call, 32 conns: >= 2x the seed design, p99 < 10 ms", 2.0,
                legacy, seed, "legacy c32")
    if legacy is not None and t4["status"] != "n/a":
        p99 = _median(legacy, "p99_us") / 1000
        t4["measured"] += f", p99 {p99:.1f} ms"
        if p99 >= 10:
            t4["status"] = "MISS"
    out.append(t4)
    out.append(_ratio(5, "HTTP POST /rpc, 32 conns: >= 1.0x bare uvicorn+Starlette", 1.0,
                      f("ppy", "http", "h.hello", 32), f("starlette", "http", "h.hello", 32), "HTTP front end"))
    sleep = f("ppy", "lines", "h.sleep", 64)
    if sleep is None:
        out.append({"n": 6, "goal": "sleep(10 ms) sync, 64 conns: >= 5,800 calls/s", "status": "n/a",
                    "measured": "not measured in this run"})
    else:
        rps = _median(sleep, "rps")
        out.append({"n": 6, "goal": "sleep(10 ms) sync, 64 conns: >= 5,800 calls/s (ideal 6,400)",
                    "status": "met" if rps >= 5800 else "MISS", "measured": f"{rps:,.0f} calls/s"})
    out.append(_workers(results.get("workers")))
    echo = None
    for p in results["points"]:
        if p["server"] == "ppy" and p["method"] == "h.echo" and p["pipeline"] == 16 and len(p["params"]) > 60000:
            echo = p if p["runs"] else None
    if echo is None:
        out.append({"n": 8, "goal": "64 KiB echo, 32 conns x 16: p99 < 100 ms", "status": "n/a",
                    "measured": "not measured in this run"})
    else:
        p99 = _median(echo, "p99_us") / 1000
        out.append({"n": 8, "goal": "64 KiB echo, 32 conns x 16 pipelined: p99 < 100 ms",
                    "status": "met" if p99 < 100 else "MISS",
                    "measured": f"p99 {p99:.1f} ms, {_median(echo, 'rps'):,.0f} calls/s"})
    out.append(_idle(results.get("idle")))
    return out


def _workers(w: dict[str, Any] | None) -> dict[str, Any]:
    goal = "cpu(100000), 32 conns, --workers 2 unpinned: >= 1.8x one worker"
    if not w:
        return {"n": 7, "goal": goal, "status": "n/a", "measured": "not measured in this run"}
    if "rps" not in w.get("workers1", {}) or "rps" not in w.get("workers2", {}):
        why = w.get("workers2", {}).get("error") or w.get("workers1", {}).get("error") or "failed"
        return {"n": 7, "goal": goal, "status": "n/a", "measured": f"--workers unavailable: {why}"}
    a, b = w["workers2"]["rps"], w["workers1"]["rps"]
    ratio = a / b if b else 0.0
    return {"n": 7, "goal": goal, "status": "met" if ratio >= 1.8 else "MISS", "ratio": round(ratio, 2),
            "measured": f"{ratio:.2f}x ({a:,.0f} vs {b:,.0f} calls/s)"}


def _idle(idle: dict[str, Any] | None) -> dict[str, Any]:
    goal = "10,000 idle connections: <= 100 MB RSS, active p99 within 2x"
    if not idle:
        return {"n": 9, "goal": goal, "status": "n/a", "measured": "not measured in this run"}
    ok = idle["rss_delta_mb"] <= 100 * idle["connections"] / 10000 and (idle["p99_ratio"] or 99) <= 2.0
    return {"n": 9, "goal": goal, "status": "met" if ok else "MISS",
            "measured": (f"{idle['connections']:,} idle: +{idle['rss_delta_mb']:.0f} MB RSS; active p99 "
                         f"{idle['p99_idle_us'] / 1000:.2f} ms vs {idle['p99_us'] / 1000:.2f} ms "
                         f"({idle['p99_ratio']}x)")}
