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
from conftest import DEMO_APP, Server

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
