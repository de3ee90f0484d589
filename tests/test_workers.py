"""``--workers N``: processes sharing the TCP, Unix and HTTP listeners under a supervising parent."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import ppy
from conftest import APPS, PPY, Server

APP = APPS / "isolation"
pytestmark = pytest.mark.timeout(90)


def children(pid: int) -> set[int]:
    """Live (non-zombie) child processes of ``pid``."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def uds_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uds") / "ppy.sock"


@pytest.fixture(scope="module")
def workers(uds_path: Path) -> Iterator[Server]:
    server = Server(APP, "--workers", "2", "--uds", str(uds_path), http=True)
    assert wait_for(lambda: len(children(server.proc.pid)) == 2)
    yield server
    code = server.stop()
    assert code == 0, server.log_path.read_text()


def pids_by_connection(url: str, want: int = 2, tries: int = 60) -> dict[int, ppy.Client]:
    """Open connections until ``want`` distinct worker pids answered; one open client per pid."""
    found: dict[int, ppy.Client] = {}
    for _ in range(tries):
        client = ppy.Client(url, timeout=20)
        pid = client.call("iso.pid")
        if pid in found:
            client.close()
        else:
            found[pid] = client
        if len(found) >= want:
            break
    return found


def test_connections_are_served_by_two_worker_processes(workers: Server) -> None:
    found = pids_by_connection(workers.url)
    try:
        assert len(found) == 2, found
        assert set(found) <= children(workers.proc.pid)  # the parent's children, not the parent
    finally:
        for client in found.values():
            client.close()


def test_cpu_bound_calls_run_in_parallel(workers: Server) -> None:
    found = pids_by_connection(workers.url)
    try:
        a, b = found.values()
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(c.call, "iso.burn", 1.0) for c in (a, b)]
            served = {f.result() for f in futures}
        elapsed = time.monotonic() - start
    finally:
        for client in found.values():
            client.close()
    assert served == set(found)
    assert elapsed < 1.7, f"two 1 s CPU calls took {elapsed:.2f} s: not in parallel"


def test_unix_socket_and_http_are_shared_too(workers: Server, uds_path: Path) -> None:
    # One Unix listening socket is shared by every worker, and the kernel may hand a burst of
    # sequential connections all to the same one. Freeze every other worker (SIGSTOP) so the
    # target alone can accept: each worker must then answer on the shared socket by itself.
    pids = children(workers.proc.pid)
    assert len(pids) == 2
    for target in pids:
        others = pids - {target}
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            with ppy.Client(f"unix://{uds_path}", timeout=10) as client:
                assert client.call("iso.pid") == target
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)
    http_pids = set()
    for _ in range(40):
        with httpx.Client(timeout=10) as client:  # a new connection each time
            reply = client.post(f"{workers.http_url}/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "iso.pid"})
        http_pids.add(reply.json()["result"])
        if len(http_pids) == 2:
            break
    assert http_pids <= children(workers.proc.pid) and len(http_pids) == 2
    assert httpx.get(f"{workers.http_url}/readyz", timeout=5).status_code == 200


def test_sigkilled_worker_is_replaced_and_calls_keep_succeeding(workers: Server) -> None:
    before = children(workers.proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    results = []
    for _ in range(30):  # calls right after the kill: the survivor (then the newcomer) answers
        with ppy.Client(workers.url, timeout=10) as client:
            results.append(client.call("iso.add", 2, 2))
    assert results == [4] * 30
    assert wait_for(lambda: len(children(workers.proc.pid)) == 2 and victim not in children(workers.proc.pid))
    newcomer = (children(workers.proc.pid) - before).pop()
    assert wait_for(lambda: re.search(rf"replaced by pid {newcomer} in \d+ ms", workers.output()))
    assert re.search(r"was killed by SIGKILL", workers.output())
    found = pids_by_connection(workers.url)
    for client in found.values():
        client.close()
    assert newcomer in found  # it serves
    text = httpx.get(f"{workers.http_url}/metrics", timeout=10).text
    assert metric(text, "ppy_worker_respawn_seconds_count", pool="workers") >= 1


def test_a_second_server_on_the_same_port_fails_instead_of_joining(workers: Server) -> None:
    """SO_REUSEPORT would let it share the port silently; the supervisor's probe bind refuses."""
    result = subprocess.run([*PPY, "serve", str(APP), "--port", str(workers.port), "--http-port", "0",
                             "--workers", "2"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{workers.port}" in result.stderr and "--port" in result.stderr


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        sample, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sample == name and got == want:
            return float(value)
    return 0.0


def test_metrics_count_every_worker_s_calls(workers: Server) -> None:
    """Whichever worker answers the scrape, it reports the calls of all of them."""
    def scrape() -> str:
        with httpx.Client(timeout=10) as client:  # a new connection: any worker may answer
            return client.get(f"{workers.http_url}/metrics").text

    before = metric(scrape(), "ppy_calls_total", method="iso.add", dialect="lines", outcome="ok")
    found = pids_by_connection(workers.url)
    try:
        for client in found.values():
            for _ in range(10):
                assert client.call("iso.add", 1, 2) == 3
    finally:
        for client in found.values():
            client.close()
    assert len(found) == 2
    for _ in range(6):
        text = scrape()
        assert metric(text, "ppy_calls_total", method="iso.add", dialect="lines", outcome="ok") == before + 20
    # Counters are written as calls end; the in-flight gauge is published every REFRESH seconds, so a
    # worker that published mid-call shows 1 until its next tick.
    deadline = time.monotonic() + 10
    while metric(scrape(), "ppy_calls_in_flight") != 0:
        assert time.monotonic() < deadline, "the in-flight gauge never came back to 0"
        time.sleep(0.1)


def test_sigterm_drains_every_worker_and_exits_zero() -> None:
    server = Server(APP, "--workers", "2", "--timeout", "5", http=True)
    assert wait_for(lambda: len(children(server.proc.pid)) == 2)
    kids = children(server.proc.pid)
    clients = list(pids_by_connection(server.url).values())

    def in_flight() -> float:  # summed over the workers (the other worker's value at most 1 s old)
        with httpx.Client(timeout=10) as client:
            return metric(client.get(f"{server.http_url}/metrics").text, "ppy_calls_in_flight")

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(c.call, "iso.sleep", 2500) for c in clients]
            assert wait_for(lambda: in_flight() == 2), "the two calls did not start"
            server.proc.send_signal(signal.SIGTERM)
            answered = [f.result() for f in slow]  # calls in flight on both workers are answered
        assert set(answered) == kids
        assert server.proc.wait(15) == 0, server.output()
    finally:
        for client in clients:
            client.close()
        server.stop()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in kids), "workers must not outlive the parent"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_drain_and_exit_when_the_supervisor_is_killed() -> None:
    server = Server(APP, "--workers", "2")
    try:
        assert wait_for(lambda: len(children(server.proc.pid)) == 2)
        kids = children(server.proc.pid)
        os.kill(server.proc.pid, signal.SIGKILL)
        assert wait_for(lambda: not any(running(pid) for pid in kids)), "orphaned workers kept running"
    finally:
        server.stop()


def test_a_worker_that_cannot_start_is_retried_with_back_off() -> None:
    server = Server(APP, "--workers", "2", env={"ISO_DIE_AT_IMPORT": "1"}, wait=False)
    try:
        time.sleep(3.0)
        assert server.proc.poll() is None, "the supervisor itself must keep running"
        attempts = len(re.findall(r"exited with code 7", server.output()))
        # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s: about 5 restarts per slot in 3 s, not hundreds
        assert 2 <= attempts <= 14, server.output()
        assert re.search(r"starting a new one in \d+\.\d s", server.output())
    finally:
        code = server.stop()
    assert code == 0


def test_console_stats_count_every_worker_s_calls(workers: Server) -> None:
    """Whichever worker answers /console/stats.json, it shows the calls of all of them."""
    def console_calls() -> int:
        with httpx.Client(timeout=10) as client:  # a new connection: any worker may answer
            snapshot = client.get(f"{workers.http_url}/console/stats.json").json()
        return int(snapshot["methods"].get("iso.sleep", {}).get("calls", 0))

    found = pids_by_connection(workers.url)
    try:
        for client in found.values():
            for _ in range(10):
                client.call("iso.sleep", 0)
    finally:
        for client in found.values():
            client.close()
    assert len(found) == 2  # both workers served calls
    # Workers share their figures once a second; then every answer, from either worker, has all 20.
    assert wait_for(lambda: all(console_calls() == 20 for _ in range(6)), timeout=10)
