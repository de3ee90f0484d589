"""The speed targets, each evaluated from the medians of one run (ppy with its default flags).

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


def _no_errors(results: dict[str, Any]) -> dict[str, Any]:
    """Every ppy point answered every call with a result: an error reply is a failure, never a call."""
    bad = [(p["label"], sum(r["errors"] + r.get("conn_errors", 0) for r in p["runs"]))
           for p in results["points"] if p["server"] == "ppy" and p["runs"]]
    bad = [(label, n) for label, n in bad if n]
    goal = "zero error replies and zero failed connections on every ppy point (default flags)"
    if not bad:
        return {"n": 6, "goal": goal, "status": "met", "measured": "0 errors"}
    return {"n": 6, "goal": goal, "status": "MISS",
            "measured": "; ".join(f"{label}: {n} errors" for label, n in bad)}


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Targets 1-5 are the speed targets with default flags; 6 is zero errors; 7-10 are the older capacity checks."""
    f = lambda *a, **k: _find(results, *a, **k)  # noqa: E731
    legacy = f("ppy", "legacy", "h.hello", 32)
    seed = f("seed-py27", "legacy", "h.hello", 32)
    seed_name = "the original seed on Python 2.7"
    if seed is None:
        seed, seed_name = f("seed", "legacy", "h.hello", 32), "the seed design ported to Python 3 (no python2.7 here)"
    t1 = _ratio(1, f"legacy, one connection per call, 32 conns: >= 2.0x {seed_name}", 2.0, legacy, seed,
                "legacy c32")
    if legacy is not None and t1["status"] != "n/a":
        t1["measured"] += f", p99 {_median(legacy, 'p99_us') / 1000:.1f} ms"
    out = [
        t1,
        _ratio(2, "lines, async def hello, 32 conns: >= 1.0x bare uvloop stdlib-json", 1.0,
               f("ppy", "lines", "h.ahello", 32), f("bare-stdlib", "lines", "h.ahello", 32), "lines c32"),
        _ratio(3, "lines, sync def hello, 32 conns: >= 2.0x the 64-thread-pool baseline", 2.0,
               f("ppy", "lines", "h.hello", 32), f("bare-pool64", "lines", "h.hello", 32), "pool c32"),
        _ratio(4, "lines, sync hello, 32 conns x 16 pipelined: >= 1.2x bare stdlib-json, 0 errors", 1.2,
               f("ppy", "lines", "h.hello", 32, 16), f("bare-stdlib", "lines", "h.hello", 32, 16), "c32x16"),
        _ratio(5, "HTTP POST /rpc sync hello, 32 conns: >= 1.7x bare uvicorn+Starlette", 1.7,
               f("ppy", "http", "h.hello", 32), f("starlette", "http", "h.hello", 32), "HTTP front end"),
        _no_errors(results),
    ]
    pipelined = f("ppy", "lines", "h.hello", 32, 16)
    if pipelined is not None and any(r["errors"] for r in pipelined["runs"]):
        out[3]["status"] = "MISS"  # target 4 asks for zero errors as well as the ratio
    sleep = f("ppy", "lines", "h.sleep", 64)
    if sleep is None:
        out.append({"n": 7, "goal": "sleep(10 ms) sync, 64 conns: >= 5,800 calls/s", "status": "n/a",
                    "measured": "not measured in this run"})
    else:
        rps = _median(sleep, "rps")
        out.append({"n": 7, "goal": "sleep(10 ms) sync, 64 conns: >= 5,800 calls/s (ideal 6,400)",
                    "status": "met" if rps >= 5800 else "MISS", "measured": f"{rps:,.0f} calls/s"})
    out.append(_workers(results.get("workers")))
    echo = None
    for p in results["points"]:
        if p["server"] == "ppy" and p["method"] == "h.echo" and p["pipeline"] == 16 and len(p["params"]) > 60000:
            echo = p if p["runs"] else None
    if echo is None:
        out.append({"n": 9, "goal": "64 KiB echo, 32 conns x 16: p99 < 100 ms", "status": "n/a",
                    "measured": "not measured in this run"})
    else:
        p99 = _median(echo, "p99_us") / 1000
        out.append({"n": 9, "goal": "64 KiB echo, 32 conns x 16 pipelined: p99 < 100 ms",
                    "status": "met" if p99 < 100 else "MISS",
                    "measured": f"p99 {p99:.1f} ms, {_median(echo, 'rps'):,.0f} calls/s"})
    out.append(_idle(results.get("idle")))
    return out


def _workers(w: dict[str, Any] | None) -> dict[str, Any]:
    goal = "cpu(100000), 32 conns, --workers 2 unpinned: >= 1.8x one worker"
    if not w:
        return {"n": 8, "goal": goal, "status": "n/a", "measured": "not measured in this run"}
    if "rps" not in w.get("workers1", {}) or "rps" not in w.get("workers2", {}):
        why = w.get("workers2", {}).get("error") or w.get("workers1", {}).get("error") or "failed"
        return {"n": 8, "goal": goal, "status": "n/a", "measured": f"--workers unavailable: {why}"}
    a, b = w["workers2"]["rps"], w["workers1"]["rps"]
    ratio = a / b if b else 0.0
    return {"n": 8, "goal": goal, "status": "met" if ratio >= 1.8 else "MISS", "ratio": round(ratio, 2),
            "measured": f"{ratio:.2f}x ({a:,.0f} vs {b:,.0f} calls/s)"}


def _idle(idle: dict[str, Any] | None) -> dict[str, Any]:
    goal = "10,000 idle connections: <= 100 MB RSS, active p99 within 2x"
    if not idle:
        return {"n": 10, "goal": goal, "status": "n/a", "measured": "not measured in this run"}
    ok = idle["rss_delta_mb"] <= 100 * idle["connections"] / 10000 and (idle["p99_ratio"] or 99) <= 2.0
    return {"n": 10, "goal": goal, "status": "met" if ok else "MISS",
            "measured": (f"{idle['connections']:,} idle: +{idle['rss_delta_mb']:.0f} MB RSS; active p99 "
                         f"{idle['p99_idle_us'] / 1000:.2f} ms vs {idle['p99_us'] / 1000:.2f} ms "
                         f"({idle['p99_ratio']}x)")}
