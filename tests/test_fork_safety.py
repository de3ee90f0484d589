"""Functions that fork or start processes: the children never answer calls nor keep the server's sockets,
and ``--isolate`` stops every process a call started along with its worker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

import ppy
from conftest import APPS, Server

APP = APPS / "forks"
pytestmark = pytest.mark.timeout(60)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def read_pid(path: Path, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} was never written")


def test_isolate_timeout_kills_the_processes_the_call_started(tmp_path: Path) -> None:
    with Server(APP, "--isolate", "--pool-size", "1", "--timeout", "1") as server:
        pid_file = tmp_path / "sleep.pid"
        with ppy.Client(server.url, timeout=10) as client, pytest.raises(ppy.RemoteError) as info:
            client.call("fk.start_sleep", str(pid_file))
        assert info.value.code == -32001
        sleep_pid = read_pid(pid_file)
        try:
            assert wait_gone(sleep_pid), "the sleep 301 a timed-out call started must be stopped too"
        finally:
            if alive(sleep_pid):
                os.kill(sleep_pid, signal.SIGKILL)
        with ppy.Client(server.url) as client:
            assert isinstance(client.call("fk.pid"), int)


def test_isolate_recycle_kills_the_processes_a_finished_call_left_running(tmp_path: Path) -> None:
    with Server(APP, "--isolate", "--pool-size", "1", "--max-jobs", "1", "--timeout", "5") as server:
        pid_file = tmp_path / "sleep.pid"
        with ppy.Client(server.url, timeout=10) as client:
            sleep_pid = client.call("fk.start_sleep", str(pid_file), 0)
        try:
            assert wait_gone(sleep_pid), "a recycled worker's process group must be stopped"
        finally:
            if alive(sleep_pid):
                os.kill(sleep_pid, signal.SIGKILL)


def test_isolate_a_forking_function_never_shifts_replies_between_callers(tmp_path: Path) -> None:
    with Server(APP, "--isolate", "--pool-size", "2", "--timeout", "10") as server:

        async def scenario() -> list[tuple[str, object]]:
            async with ppy.AsyncClient(server.url) as client:
                calls = []
                for i in range(40):
                    if i % 4 == 0:
                        calls.append((f"parent of f{i}", client.call("fk.fork_and_return", f"f{i}", 0.05)))
                    else:
                        calls.append((f"parent of p{i}", client.call("fk.fork_and_return", f"p{i}")))
                results = await asyncio.gather(*(c for _, c in calls), return_exceptions=True)
                return [(want, got) for (want, _), got in zip(calls, results, strict=True)]

        for want, got in asyncio.run(scenario()):
            assert got == want  # never "child of ...", never another caller's reply
        with ppy.Client(server.url) as client:
            assert [client.call("fk.fork_and_return", f"s{i}") for i in range(5)] == \
                [f"parent of s{i}" for i in range(5)]


@pytest.mark.parametrize("method", ["fk.fork_and_return", "fk.afork_and_return", "fk.afork_after_await"])
def test_forked_child_keeps_no_server_socket_and_answers_nothing(tmp_path: Path, method: str) -> None:
    pid_file = tmp_path / "child.pid"
    server = Server(APP, "--timeout", "5")
    port = server.port
    child = 0
    try:
        with ppy.Client(server.url, timeout=10) as client:
            args = ("t", 30.0, str(pid_file)) if method == "fk.fork_and_return" else ("t",)
            assert client.call(method, *args) == "parent of t"
            assert client.call("fk.pid") == server.proc.pid
        if method == "fk.fork_and_return":
            child = read_pid(pid_file)
            assert alive(child)
        assert server.stop() == 0
        with socket.socket() as probe:  # the port is free at once although the child still lives
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.listen()
        if child:
            assert alive(child)
    finally:
        if child and alive(child):
            os.kill(child, signal.SIGKILL)
