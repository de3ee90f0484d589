"""Raw-socket probes shared by the hostile-input, limit and shutdown tests.

They speak the wire formats by hand (not through ppy's client) so a test sees
exactly the bytes the server sends, and every wait is bounded by a socket
timeout: a server that hangs fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from conftest import Server, legacy_frame, recv_all, recv_line


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class PeakRss:
    """Sample a process's RSS every few milliseconds in a thread; ``growth`` is peak minus start, in KiB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, RuntimeError):
                return

    @property
    def growth(self) -> int:
        return self.peak - self.start

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, rss_kib(self.pid))


def request(method: str, params: Any = None, rid: Any = 1, **extra: Any) -> bytes:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": [] if params is None else params, "id": rid}
    obj.update(extra)
    return json.dumps(obj).encode() + b"\n"


def lines_call(server: Server, method: str, params: Any = None, timeout: float = 10.0, **extra: Any) -> dict[str, Any]:
    """One JSON-RPC call on a fresh lines connection; the decoded reply object."""
    with server.connect(timeout) as sock:
        sock.sendall(request(method, params, **extra))
        reply: dict[str, Any] = json.loads(recv_line(sock, timeout))
    return reply


def parse_legacy(raw: bytes) -> dict[str, Any]:
    """Check a legacy reply's 11-byte header against its payload and decode the payload."""
    assert len(raw) >= 11, f"short legacy reply {raw[:100]!r}"
    head, body = raw[:11], raw[11:]
    assert int(head[: head.index(b".")]) == len(body), f"header {head!r} does not match {len(body)} payload bytes"
    assert head[head.index(b".") + 1:].strip(b"0") == b"", f"header {head!r} is not '<len>.000...'"
    reply: dict[str, Any] = json.loads(body)
    assert list(reply) == ["data", "error"], reply
    return reply


def legacy_raw(server: Server, payload: bytes, timeout: float = 10.0) -> bytes:
    with server.connect(timeout) as sock:
        sock.sendall(legacy_frame(payload))
        return recv_all(sock, timeout)


def legacy_call(server: Server, entry: str, func: str, param: Any = None, timeout: float = 10.0,
                **extra: Any) -> dict[str, Any]:
    """One seed-style call; the decoded ``{"data", "error"}`` reply."""
    doc = {"entry": entry, "func": func, "param": [] if param is None else param, **extra}
    return parse_legacy(legacy_raw(server, json.dumps(doc).encode(), timeout))


def call_once(url: str, method: str, *args: Any, **client_options: Any) -> Any:
    """One call on a fresh ``ppy.Client`` that is closed afterwards (no socket left to the collector)."""
    import ppy

    with ppy.Client(url, **client_options) as client:
        return client.call(method, *args)


def assert_healthy(server: Server, timeout: float = 5.0) -> None:
    """A well-behaved client of each dialect still gets correct answers, each within ``timeout`` s.

    The socket timeout is the bound: a server that stopped answering fails here.
    """
    assert server.proc.poll() is None, f"server died with {server.proc.returncode}:\n{server.output()[-3000:]}"
    marker = f"alive-{time.monotonic_ns()}"
    reply = lines_call(server, "calls.echo", [marker], timeout=timeout)
    assert reply == {"jsonrpc": "2.0", "id": 1, "result": [marker]}, reply
    legacy = legacy_call(server, "calls", "echo", [marker], timeout=timeout)
    assert legacy == {"data": [marker], "error": ""}, legacy


class Lines:
    """Read one reply line at a time from a pipelined lines connection (a recv may hold several)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"closed after {self.buf[:200]!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, str]:
    """Everything the server sends until it closes; ``how`` is 'eof', 'reset' or 'timeout'."""
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            return b"".join(chunks), "reset"
        except TimeoutError:
            return b"".join(chunks), "timeout"
        if not chunk:
            return b"".join(chunks), "eof"
        chunks.append(chunk)


def wait_inflight(server: Server, count: int, timeout: float = 15.0, *, at_least: bool = False) -> None:
    """Poll the server's in-flight count (HTTP ``/console/stats.json``; start it with ``http=True``)
    until it reaches ``count`` (or more, with ``at_least``): the observable to wait on instead of
    sleeping "until they run"."""
    import urllib.request

    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/console/stats.json", timeout=5) as resp:
            seen = int(json.loads(resp.read())["inflight"])
        if seen == count or (at_least and seen > count):
            return
        time.sleep(0.01)
    raise AssertionError(f"{seen} calls in flight after {timeout} s, expected {count}")
