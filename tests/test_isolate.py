"""``--isolate``: a supervised pool of single-call worker processes (README.md).

Each test talks to a real ``ppy serve --isolate`` over TCP and checks the
process table itself: a timed-out worker's pid is really gone, a crash costs
exactly its own call, recycled workers have new pids.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import ppy
from conftest import APPS, Server
from probes import wait_inflight

APP = APPS / "isolation"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def iso() -> Iterator[Server]:
    server = Server(APP, "--isolate", "--pool-size", "4", "--timeout", "2", "--max-worker-memory", "200",
                    http=True)
    yield server
    code = server.stop()
    assert code == 0, server.log_path.read_text()


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def call_error(url: str, method: str, *args: object) -> ppy.RemoteError:
    with ppy.Client(url, timeout=10) as client, pytest.raises(ppy.RemoteError) as info:
        client.call(method, *args)
    return info.value


def test_calls_run_in_worker_processes_with_json_types_intact(iso: Server) -> None:
    with ppy.Client(iso.url) as client:
        pids = {client.call("iso.pid") for _ in range(8)}
        assert iso.proc.pid not in pids and all(alive(p) for p in pids)
        out = client.call("iso.line_total", [{"sku": "a", "qty": 2, "at": "2024-05-01T10:00:00"}], "1.5")
        assert out == {"qty": 2, "total": 3.0, "types": ["Line/datetime"]}  # a dataclass and a datetime again
        assert client.call("iso.ahello", "bob").startswith("hello, bob from ")
        with pytest.raises(ppy.RemoteApplicationError) as info:
            client.call("iso.boom", "no luck")
        assert info.value.type == "ValueError" and info.value.message == "no luck"


def test_timeout_answers_32001_and_the_worker_is_gone(iso: Server, tmp_path: Path) -> None:
    pid_file = tmp_path / "hang.pid"
    start = time.monotonic()
    err = call_error(iso.url, "iso.hang", str(pid_file))
    elapsed = time.monotonic() - start
    assert err.code == -32001, err
    assert elapsed < 2 + 1, elapsed
    pid = int(pid_file.read_text())
    assert err.data["worker_pid"] == pid
    assert not alive(pid), "the timed-out worker must be killed (and reaped) before the reply"
    with ppy.Client(iso.url) as client:  # the pool is whole again
        assert client.call("iso.add", 2, 3) == 5
    deadline = time.monotonic() + 5
    while "replaced by" not in iso.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert re.search(rf"worker {pid} retired \(.*deadline\); replaced by \d+ in \d+ ms", iso.output())
    metrics = httpx.get(f"{iso.http_url}/metrics", timeout=10).text
    assert re.search(r'^ppy_worker_respawn_seconds_count\{pool="isolate"\} [1-9]', metrics, re.M), metrics


@pytest.mark.parametrize(("method", "exit_text"), [("iso.exit3", "exit code 3"),
                                                    ("iso.segfault", "killed by SIGSEGV")])
def test_a_crash_fails_only_its_own_call(iso: Server, method: str, exit_text: str) -> None:
    async def scenario() -> tuple[list[object], BaseException | object]:
        clients = [ppy.AsyncClient(iso.url, timeout=10) for _ in range(5)]
        try:
            healthy = [asyncio.ensure_future(clients[i % 5].call("iso.sleep", 300)) for i in range(10)]
            await asyncio.to_thread(wait_inflight, iso, 10)  # in flight when the crash happens
            crash = await asyncio.gather(clients[0].call(method), return_exceptions=True)
            return list(await asyncio.gather(*healthy, return_exceptions=True)), crash[0]
        finally:
            for c in clients:
                await c.close()

    results, crash = asyncio.run(scenario())
    assert isinstance(crash, ppy.RemoteWorkerCrashed), crash
    assert crash.code == -32004 and exit_text in crash.message and crash.data["exit"] == exit_text
    assert all(isinstance(r, int) for r in results), results  # all 10 succeeded (each returns a pid)
    with ppy.Client(iso.url) as client:
        assert client.call("iso.add", 1, 1) == 2


def test_memory_past_the_limit_answers_32004(iso: Server) -> None:
    err = call_error(iso.url, "iso.hog", 600, 5.0)
    assert err.code == -32004, err
    assert "--max-worker-memory 200 MB" in err.message and err.data["rss_mb"] > 200
    assert not alive(err.data["worker_pid"])
    with ppy.Client(iso.url) as client:
        assert client.call("iso.hog", 20, 0.0) == 2  # a small allocation is fine


def test_invalid_params_are_answered_without_a_worker(tmp_path: Path) -> None:
    """With the only worker busy, a bad call is still answered at once: the server checked it."""
    with Server(APP, "--isolate", "--pool-size", "1", "--timeout", "5", http=True) as server:
        async def scenario() -> tuple[BaseException | object, float]:
            async with ppy.AsyncClient(server.url) as busy, ppy.AsyncClient(server.url) as other:
                slow = asyncio.ensure_future(busy.call("iso.sleep", 1500))
                await asyncio.to_thread(wait_inflight, server, 1)
                start = time.monotonic()
                bad = (await asyncio.gather(other.call("iso.add", "x", 1), return_exceptions=True))[0]
                took = time.monotonic() - start
                await slow
                return bad, took

        bad, took = asyncio.run(scenario())
        assert isinstance(bad, ppy.RemoteInvalidParams) and "'a'" in bad.message
        assert took < 1.0, took  # did not wait for the busy worker


def test_max_jobs_recycles_workers_and_queue_is_fifo_and_bounded() -> None:
    with Server(APP, "--isolate", "--pool-size", "1", "--max-jobs", "5", "--max-inflight", "4",
                "--timeout", "5", http=True) as server:
        with ppy.Client(server.url) as client:
            pids = [client.call("iso.pid") for _ in range(11)]
        assert len(set(pids[:5])) == 1 and len(set(pids[5:10])) == 1 and pids[4] != pids[5] != pids[10], pids
        assert not alive(pids[0])

        async def scenario() -> tuple[list[int], BaseException | object]:
            async with ppy.AsyncClient(server.url) as client:
                order: list[int] = []

                async def one(i: int) -> None:
                    await client.call("iso.sleep", 400)  # long enough for the next ones to be seen queued
                    order.append(i)

                tasks = []
                for i in range(4):  # 4 calls fill --max-inflight 4 on a pool of 1: they queue
                    tasks.append(asyncio.ensure_future(one(i)))
                    await asyncio.to_thread(wait_inflight, server, i + 1)  # in arrival order
                over = (await asyncio.gather(client.call("iso.pid"), return_exceptions=True))[0]
                await asyncio.gather(*tasks)
                return order, over

        order, over = asyncio.run(scenario())
        assert order == [0, 1, 2, 3]  # served first come, first served
        assert isinstance(over, ppy.RemoteOverloaded) and over.code == -32002


def test_drain_finishes_calls_and_stops_every_worker() -> None:
    server = Server(APP, "--isolate", "--pool-size", "2", "--timeout", "5", http=True)
    with ppy.Client(server.url) as client:
        pids = {client.call("iso.pid") for _ in range(6)}

    async def scenario() -> object:
        async with ppy.AsyncClient(server.url) as client:
            slow = asyncio.ensure_future(client.call("iso.sleep", 800))
            await asyncio.to_thread(wait_inflight, server, 1)
            server.proc.send_signal(15)
            return await slow

    assert isinstance(asyncio.run(scenario()), int)  # the call in flight was answered
    server.proc.wait(15)
    code = server.stop()
    assert code == 0, server.log_path.read_text()
    assert not any(alive(p) for p in pids), "worker processes must not outlive the server"
