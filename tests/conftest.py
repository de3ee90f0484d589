"""Shared fixtures: a real ``ppy serve`` process on free loopback ports, and tool checks.

Tests talk to real servers over real sockets; nothing is mocked that can run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
DEMO_APP = ROOT / "src" / "ppy" / "demo_app"
PPY = [sys.executable, "-m", "ppy"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The tool's path; a missing tool skips the test locally and fails it under CI=true."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path:
        return path
    message = f"{name} is not installed (make test installs it via apt-get when run as root)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Every Server started this session: kept referenced so a test that lets its server exit on its own
#: (or fails before stop()) does not leave an unclosed log file to the garbage collector, which
#: ``filterwarnings = error`` would turn into a failure of whatever test runs next.
_SERVERS: list[Server] = []


@pytest.fixture(scope="session", autouse=True)
def _close_every_server() -> Iterator[None]:
    yield
    for server in _SERVERS:
        server.stop(timeout=5)


class Server:
    """A ``ppy serve`` subprocess; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(self, app_dir: Path | str | None, *args: str, http: bool = False,
                 env: dict[str, str] | None = None, cwd: Path | None = None, wait: bool = True) -> None:
        self.port = free_port()
        self.http_port = free_port() if http else 0
        cmd = [*PPY, "serve"]
        if app_dir is not None:
            cmd.append(str(app_dir))
        cmd += ["--port", str(self.port), "--http-port", str(self.http_port), *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ppy-test-{self.port}.log"
        self._log = open(self.log_path, "w+b")  # noqa: SIM115 - closed in stop()
        _SERVERS.append(self)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
                                     cwd=cwd or ROOT, start_new_session=True)
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ppy serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            if not self.http_port or _port_open(self.http_port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"ppy serve did not start within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_server(app_dir: Path | str | None, *args: str, **kwargs: object) -> Server:
    return Server(app_dir, *args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def demo_server() -> Iterator[Server]:
    """The bundled demo app, shared by a module's tests (they must leave it healthy)."""
    server = Server(DEMO_APP)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def test_server() -> Iterator[Server]:
    """tests/apps/core: functions that raise, hang, exit, return odd types; 2 s timeout."""
    server = Server(APPS / "core", "--timeout", "2", "--debug")
    yield server
    server.stop()


def legacy_frame(payload: bytes) -> bytes:
    head = str(len(payload)).encode() + b"."
    return head.ljust(11, b"0") + payload


def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def recv_line(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Exactly one reply line: bytes after its newline stay in the socket for the next call
    (the server may coalesce several replies into one write)."""
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        peek = sock.recv(1 << 20, socket.MSG_PEEK)
        if not peek:
            raise ConnectionError(f"closed after {buf!r}")
        nl = peek.find(b"\n")
        buf += sock.recv(nl + 1 if nl >= 0 else len(peek))
    return buf
