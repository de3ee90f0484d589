"""``GET /metrics`` as Prometheus tooling reads it: ``promtool check metrics`` clean, the process and
platform series every exporter has, no ``*_created`` series, OpenMetrics ``# UNIT``s, and no family
that cannot apply — in one process, under ``--workers`` and under ``--isolate``.

promtool comes from Debian's ``prometheus`` package (scripts/system-deps.sh); a missing promtool skips
these tests locally and fails them under CI=true.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import ppy
from conftest import DEMO_APP, Server, require_tool

pytestmark = pytest.mark.timeout(90)
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def scrape(server: Server, accept: str | None = None) -> str:
    with ppy.Client(server.url) as client:
        client.call("h.hello")
        client.call("h.add", 1, 2)
    headers = {"Accept": accept} if accept else {}
    reply = httpx.get(server.http_url + "/metrics", headers=headers, timeout=10)
    assert reply.status_code == 200
    return reply.text


def promtool_clean(text: str) -> None:
    out = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


def series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith((name + " ", name + "{"))]


def check_conventions(text: str, openmetrics: str) -> None:
    promtool_clean(text)
    assert "_created" not in text and "_created" not in openmetrics
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total",
                 "process_start_time_seconds", "python_info"):
        assert series(text, name), f"no {name} in\n{text}"
    families = {f.name: f for f in text_string_to_metric_families(openmetrics)}  # strict OpenMetrics parser
    for name, unit in (("ppy_call_duration_seconds", "seconds"), ("process_cpu_seconds", "seconds"),
                       ("process_resident_memory_bytes", "bytes"), ("process_start_time_seconds", "seconds")):
        assert families[name].unit == unit, name
        assert f"# UNIT {name} {unit}\n" in openmetrics
    assert not any(f.unit for name, f in families.items() if not name.endswith(("_seconds", "_bytes")))


@pytest.fixture(scope="module")
def single() -> Iterator[Server]:
    with Server(DEMO_APP, "--no-access-log", http=True) as srv:
        yield srv


def test_one_process(single: Server) -> None:
    text = scrape(single)
    check_conventions(text, scrape(single, OPENMETRICS))
    assert "ppy_worker_respawn_seconds" not in text  # no pool: nothing is ever respawned
    rss = float(series(text, "process_resident_memory_bytes")[0].split()[-1])
    with open(f"/proc/{single.proc.pid}/status") as status:
        kib = int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1))  # type: ignore[union-attr]
    assert 0.5 < rss / (kib * 1024) < 2  # the server's own memory, not the test's


def test_workers_report_each_worker_by_pid() -> None:
    with Server(DEMO_APP, "--no-access-log", "--workers", "2", http=True) as srv:
        deadline = time.monotonic() + 20
        while True:  # each worker publishes its figures within a second of starting
            text = scrape(srv)
            pids = {re.search(r'pid="(\d+)"', line).group(1)  # type: ignore[union-attr]
                    for line in series(text, "process_resident_memory_bytes")}
            if len(pids) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(pids) == 2, text
        assert str(srv.proc.pid) not in pids  # the workers, not the supervisor
        for name in ("process_open_fds", "process_start_time_seconds"):
            assert len(series(text, name)) == 2 and all('pid="' in s for s in series(text, name))
        cpu = series(text, "process_cpu_seconds_total")
        assert len(cpu) == 1 and float(cpu[0].split()[-1]) > 0  # summed over the workers
        assert len(series(text, "python_info")) == 1
        check_conventions(text, scrape(srv, OPENMETRICS))


def test_isolate_has_the_respawn_family() -> None:
    with Server(DEMO_APP, "--no-access-log", "--isolate", http=True) as srv:
        text = scrape(srv)
        check_conventions(text, scrape(srv, OPENMETRICS))
        assert series(text, "ppy_worker_respawn_seconds_count") == [
            'ppy_worker_respawn_seconds_count{pool="isolate"} 0.0']
