"""Scale-out: Debian's HAProxy (TCP mode, /readyz checks) in front of two ``ppy serve``, rolling restart.

While a bounded client load runs through HAProxy, each instance in turn gets
SIGTERM, drains, exits 0 and is started again.  Every call records its id in
a file from inside the server, so the test counts exactly: zero failed calls,
none lost, none run twice.

The client speaks the legacy dialect (one connection per call) and resends a
call only when the server provably did not run it (docs/deploy.md): the
connection was refused, it closed with *no* reply byte (ppy answers every
request it fully received, even while draining, so silence means "never
read"), or the reply is -32002 "shutting down, retry".
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import APPS, PPY, ROOT, free_port, legacy_frame, require_tool

APP = APPS / "isolation"
pytestmark = pytest.mark.timeout(120)

HAPROXY_CFG = """
global
    maxconn 2000
    stats socket {admin} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1

frontend ppy
    bind 127.0.0.1:{front}
    default_backend ppy

backend ppy
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""
SERVER_LINE = "    server {name} 127.0.0.1:{port} check port {http} inter 200ms fall 1 rise 2"


class Instance:
    """One ``ppy serve`` on fixed ports, so HAProxy finds it again after a restart."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.port = free_port()
        self.http_port = free_port()
        self.log = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [*PPY, "serve", str(APP), "--port", str(self.port), "--http-port", str(self.http_port),
               "--timeout", "5"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{self.name} did not start:\n{self.log.read_text()}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def haproxy_status(admin: Path) -> dict[str, str]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(admin))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
    return {row["svname"]: row["status"] for row in rows if row["pxname"] == "ppy"}


def wait_status(admin: Path, name: str, want: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if haproxy_status(admin).get(name, "").startswith(want):
            return
        time.sleep(0.05)
    raise AssertionError(f"haproxy never saw {name} {want}: {haproxy_status(admin)}")


@dataclass
class Load:
    """Client threads calling iso.record through HAProxy until told to stop (bounded in count too)."""

    port: int
    record_file: Path
    threads: int = 4
    max_calls: int = 50000  # a bound, far above what the restart needs
    done: dict[str, str] = field(default_factory=dict)  # call id -> result
    failures: list[str] = field(default_factory=list)
    resends: Counter[str] = field(default_factory=Counter)  # why a call was sent again
    stop: threading.Event = field(default_factory=threading.Event)

    def once(self, call_id: str) -> str | None:
        """One attempt: the result, or None when the call provably did not run (send it again)."""
        payload = json.dumps({"entry": "iso", "func": "record", "param": [call_id, str(self.record_file)]})
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except OSError:
            self.resends["connect refused"] += 1
            return None
        with sock:
            try:
                sock.sendall(legacy_frame(payload.encode()))
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            except ConnectionResetError:
                if reply:
                    raise
                reply = b""
        if not reply:
            self.resends["closed before any reply byte"] += 1
            return None
        doc = json.loads(reply[11:])
        if doc["error"]:
            if "shutting down" in doc["error"] or "retry later" in doc["error"]:
                self.resends["refused while draining"] += 1
                return None
            raise RuntimeError(doc["error"])
        return str(doc["data"])

    def worker(self, index: int) -> None:
        n = 0
        while not self.stop.is_set() and len(self.done) < self.max_calls:
            call_id = f"{index}-{n}"
            n += 1
            try:
                for _attempt in range(20):
                    result = self.once(call_id)
                    if result is not None:
                        self.done[call_id] = result
                        break
                    time.sleep(0.01)
                else:
                    self.failures.append(f"{call_id}: gave up after 20 attempts")
            except Exception as exc:
                self.failures.append(f"{call_id}: {exc!r}")

    def wait_progress(self, calls: int, timeout: float = 20.0) -> None:
        """Until ``calls`` more calls were answered (bounded): the load's own progress, not a sleep."""
        target = len(self.done) + calls
        deadline = time.monotonic() + timeout
        while len(self.done) < target and len(self.done) < self.max_calls:
            assert time.monotonic() < deadline, f"{len(self.done)} calls done, waited for {target}"
            assert not self.failures, self.failures[:10]
            time.sleep(0.01)

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(self.threads)]
        for t in threads:
            t.start()
        return threads


def test_rolling_restart_behind_haproxy_loses_and_repeats_nothing(tmp_path: Path) -> None:
    haproxy = require_tool("haproxy")
    a, b = Instance("a", tmp_path), Instance("b", tmp_path)
    front, admin = free_port(), tmp_path / "admin.sock"
    servers = "\n".join(SERVER_LINE.format(name=i.name, port=i.port, http=i.http_port) for i in (a, b))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(admin=admin, front=front, servers=servers))
    a.start()
    b.start()
    proxy = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not admin.exists() and time.monotonic() < deadline:
            assert proxy.poll() is None, proxy.stdout.read() if proxy.stdout else ""
            time.sleep(0.05)
        wait_status(admin, "a", "UP")
        wait_status(admin, "b", "UP")
        load = Load(front, tmp_path / "calls.txt")
        threads = load.run()
        pids_before = set()
        load.wait_progress(50)  # the load runs through both instances
        for inst in (a, b):
            assert inst.proc is not None
            pids_before.add(inst.proc.pid)
            assert inst.stop() == 0, inst.log.read_text()  # drained and exited cleanly
            wait_status(admin, inst.name, "DOWN")
            load.wait_progress(30)  # the other instance carries the load alone for a while
            inst.start()
            wait_status(admin, inst.name, "UP")
            load.wait_progress(30)
        load.stop.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
    finally:
        proxy.terminate()
        proxy.wait(10)
        if proxy.stdout is not None:
            proxy.stdout.close()
        for inst in (a, b):
            if inst.proc is not None:
                inst.stop()

    assert load.failures == [], load.failures[:10]
    lines = load.record_file.read_text().splitlines()
    recorded = Counter(line.split()[0] for line in lines)
    duplicated = [cid for cid, n in recorded.items() if n > 1]
    lost = set(load.done) - set(recorded)
    assert duplicated == [], duplicated[:10]
    assert lost == set(), sorted(lost)[:10]
    assert set(recorded) == set(load.done)  # nothing ran that the client did not get an answer for
    served_by = {int(line.split()[1]) for line in lines}
    assert len(served_by) == 4 and pids_before < served_by, served_by  # both old and both new processes served
    assert len(load.done) > 200, len(load.done)
    print(f"\nrolling restart: {len(load.done)} calls, 0 failed, 0 lost, 0 duplicated; "
          f"resent (provably not run): {dict(load.resends) or 0}")
