"""`make bench` keeps working: one short point per dialect, built and run for real.

Only that it ran and produced numbers is checked — never how fast (CI machines
are noisy; speed is judged by BENCHMARKS.md from a quiet machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, require_tool


@pytest.mark.timeout(180)
def test_bench_smoke_runs_every_dialect_and_reports_numbers(tmp_path: Path) -> None:
    require_tool("cc")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    points = {(p["server"], p["dialect"]): p for p in results["points"]}
    dialects = {"lines", "legacy"} | ({"http"} if results["http"] else set())
    for dialect in dialects:
        runs = points[("ppy", dialect)]["runs"]
        assert runs and runs[0]["calls"] > 0, (dialect, runs)
        assert runs[0]["errors"] == 0, (dialect, runs[0]["first_error"])
        assert runs[0]["p99_us"] >= runs[0]["p50_us"] > 0
        assert runs[0]["cpu_us_per_call"] is not None
    assert points[("c-floor", "lines")]["runs"][0]["calls"] > 0
    report = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| ppy | lines |" in report and "## Targets" in report


def test_loadgen_counts_error_replies_as_errors(tmp_path: Path) -> None:
    """The C load generator must not count an error reply as a successful call."""
    require_tool("cc")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import procs
    finally:
        sys.path.pop(0)
    from conftest import Server

    procs.build()
    with Server(None) as server:
        bad = procs.loadgen(server.port, connections=2, duration=0.3, warmup=0.1, method="h.nope", core=None)
        legacy = procs.loadgen(server.port, dialect="legacy", connections=2, duration=0.3, warmup=0.1,
                               method="h.nope", core=None)
        good = procs.loadgen(server.port, connections=2, pipeline=3, duration=0.3, warmup=0.1, core=None)
    assert bad["calls"] > 0 and bad["errors"] == bad["calls"] and "-32601" in bad["first_error"]
    assert legacy["calls"] > 0 and legacy["errors"] == legacy["calls"]
    assert good["calls"] > 0 and good["errors"] == 0
