"""Open files: the server raises its soft RLIMIT_NOFILE and fits --max-connections to the hard limit."""

from __future__ import annotations

import json
import re
import socket
import sys
import time

import httpx
import pytest

import conftest
import ppy
from conftest import APPS, DEMO_APP, Server, recv_line
from probes import legacy_raw, parse_legacy, read_until_closed, request

pytestmark = pytest.mark.timeout(60)


def _limited(soft: int, hard: int) -> list[str]:
    """A command prefix that runs ``python -m ppy`` under ``RLIMIT_NOFILE`` = (soft, hard)."""
    code = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
            f"({soft}, {hard})); os.execv(sys.executable, [sys.executable, '-m', 'ppy', *sys.argv[1:]])")
    return [sys.executable, "-c", code]


def _open_files(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_soft_limit_is_raised_to_the_hard_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "PPY", _limited(512, 4096))
    with Server(DEMO_APP) as server:
        assert _open_files(server.proc.pid) == (4096, 4096)
        assert "does not fit the open-files limit" not in server.output()


def test_connections_past_a_lowered_limit_get_overloaded_and_healthz_keeps_working(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "PPY", _limited(256, 256))
    with Server(DEMO_APP, http=True) as server:
        found = re.search(r"--max-connections 1024 does not fit the open-files limit \(ulimit -n 256, hard limit "
                          r"256\).*serving at most (\d+) connections per listener", server.output())
        assert found, server.output()
        limit = int(found.group(1))
        assert 0 < limit < 256 // 2
        held: list[socket.socket] = []
        try:
            for _ in range(limit):
                sock = server.connect()
                sock.sendall(b'{"jsonrpc":"2.0","method":"rpc.ping","id":1}\n')
                assert sock.recv(1000)  # accepted and answered: it counts as open
                held.append(sock)
            for _ in range(5):  # past the limit: the dialect's overloaded error, never a silent reset
                with server.connect() as extra:
                    extra.sendall(b'{"jsonrpc":"2.0","method":"rpc.ping","id":2}\n')
                    reply = json.loads(conftest.recv_all(extra).split(b"\n")[0])
                    assert reply["error"]["code"] == -32002, reply
            assert httpx.get(f"{server.http_url}/healthz", timeout=5).status_code == 200
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        while True:  # the slots come back as the server sees the closes
            try:
                with ppy.Client(server.url) as client:
                    assert client.call("h.hello") == "hello, world."
                break
            except ppy.RemoteError:
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_out_of_descriptors_clients_are_answered_overloaded_and_accepting_resumes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A function that uses up every descriptor: new clients get -32002 (HTTP 503) in their own dialect
    instead of a silent reset, the server says so in its log, and serves them again once it has some."""
    monkeypatch.setattr(conftest, "PPY", _limited(256, 256))
    with Server(APPS / "fds", http=True) as server:
        with server.connect() as ctl:  # one connection for both calls: no new one can be accepted between
            ctl.sendall(request("fds.hog", [], 1))
            assert json.loads(recv_line(ctl))["result"] > 100
            for i in range(3):  # each refused client gives its descriptor back as the spare for the next
                with server.connect() as extra:
                    extra.sendall(request("rpc.ping", [], i))
                    data, _how = read_until_closed(extra, 5)
                err = json.loads(data)["error"]
                assert err["code"] == -32002 and "out of file descriptors" in err["message"], data
                reply = parse_legacy(legacy_raw(server, json.dumps({"entry": "fds", "func": "free"}).encode(), 5))
                assert reply["data"] == [] and "out of file descriptors" in reply["error"], reply
                health = httpx.get(f"{server.http_url}/healthz", timeout=5)
                assert health.status_code == 503 and health.json()["error"]["code"] == -32002, health.text
            ctl.sendall(request("fds.free", [], 2))
            assert json.loads(recv_line(ctl))["result"] > 100
            with ppy.Client(server.url) as client:  # the first accept after the free one serves it
                assert client.call("rpc.ping") == "pong"
            assert httpx.get(f"{server.http_url}/healthz", timeout=5).status_code == 200
        log = server.output()
        assert re.search(r"cannot accept on tcp://127\.0\.0\.1:\d+: Too many open files", log), log
        assert re.search(r"cannot accept on http://127\.0\.0\.1:\d+: Too many open files", log), log
        assert re.search(r"accepting on tcp://127\.0\.0\.1:\d+ again: descriptors are free \(6 clients were "
                         r"answered overloaded", log), log  # 3 lines and 3 legacy clients
