"""Restarts without a single failed call, as a PHP shop deploys: real php clients and Python clients
over both TCP dialects and HTTP, while (a) ``--workers 2`` is rolled three times with SIGHUP and
(b) a single process under a socket-holding parent (as systemd's ppy.socket) is restarted three
times.  Every call id is recorded server-side (the app appends it to a ledger file), so a failed, a
lost and a duplicated call are each counted, and must all be 0.

Also: systemd socket activation itself (``systemd-socket-activate`` passes named sockets), a broken
edit stopping a roll while the old code serves, and new code answering after a good roll.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import ppy
from conftest import PPY, ROOT, Server, free_port, legacy_frame, recv_all, require_tool
from probes import call_once, parse_legacy

pytestmark = pytest.mark.timeout(120)

PHP_AUTOLOAD = ROOT / "clients" / "php" / "autoload.php"
APP = '''import os

VERSION = {version!r}


def rec(call_id):
    """Append the call's id to the ledger: one line per call that ran (O_APPEND: atomic per line)."""
    fd = os.open(os.environ["PPY_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (call_id + "\\n").encode())
    finally:
        os.close(fd)
    return [call_id, VERSION]


def version():
    return VERSION


def environ(name):
    return os.environ.get(name)
'''

#: A PHP-FPM worker's life in a loop: a new Ppy\Client per "page" (the persistent socket is reused),
#: or the seed's ppy_exchange() (one legacy connection per call), until the stop file appears.
PHP_LOOP = r'''<?php
require $argv[1];
[, , $port, $stop, $tag, $mode] = $argv;
putenv('PPY_HOST=127.0.0.1');
putenv("PPY_PORT=$port");
$n = 0;
$ok = [];
$failed = [];
while (!file_exists($stop)) {
    $id = $tag . '-' . (++$n);
    try {
        if ($mode === 'lines') {
            $reply = (new Ppy\Client("tcp://127.0.0.1:$port", ['timeout' => 20, 'connect_timeout' => 20]))
                ->call('r.rec', $id);
        } else {
            $json = json_decode(ppy_exchange('r', 'rec', [$id], ['timeout' => 20, 'connect_timeout' => 20]), true);
            if ($json['error'] !== '') {
                throw new RuntimeException($json['error']);
            }
            $reply = $json['data'];
        }
        if ($reply[0] !== $id) {
            throw new RuntimeException('reply for another call: ' . json_encode($reply));
        }
        $ok[] = $id;
    } catch (Throwable $e) {
        $failed[] = $id . ': ' . get_class($e) . ': ' . $e->getMessage();
    }
}
echo json_encode(['ok' => $ok, 'failed' => $failed]), "\n";
'''


@dataclass
class Load:
    """Clients calling r.rec with unique ids until stopped; what each saw."""

    port: int
    http_port: int
    tmp: Path
    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _php: list[subprocess.Popen[str]] = field(default_factory=list)
    _clients: list[ppy.Client] = field(default_factory=list)

    def start(self) -> None:
        php = require_tool("php")
        script = self.tmp / "loop.php"
        script.write_text(PHP_LOOP)
        for tag, mode in (("php-lines-a", "lines"), ("php-lines-b", "lines"), ("php-legacy", "legacy")):
            self._php.append(subprocess.Popen(
                [php, str(script), str(PHP_AUTOLOAD), str(self.port), str(self.tmp / "stop"), tag, mode],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        url, http_url = f"tcp://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.http_port}"
        for tag, call in (("py-lines", self._blocking(url)), ("py-http", self._blocking(http_url)),
                          ("py-legacy", self._legacy)):
            self._threads.append(threading.Thread(target=self._loop, args=(tag, call), daemon=True))
        self._threads.append(threading.Thread(target=self._async_loop, daemon=True))
        for thread in self._threads:
            thread.start()

    def _blocking(self, url: str) -> Callable[[str], Any]:
        client = ppy.Client(url, timeout=20, connect_timeout=20)
        self._clients.append(client)  # closed by stop()
        return lambda call_id: client.call("r.rec", call_id)

    def _legacy(self, call_id: str) -> Any:
        payload = json.dumps({"entry": "r", "func": "rec", "param": [call_id]}).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            sock.sendall(legacy_frame(payload))
            reply = parse_legacy(recv_all(sock, 20))
        if reply["error"]:
            raise RuntimeError(reply["error"])
        return reply["data"]

    def _loop(self, tag: str, call: Callable[[str], Any]) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            self._check(f"{tag}-{n}", call)

    def _check(self, call_id: str, call: Callable[[str], Any]) -> None:
        try:
            reply = call(call_id)
            assert reply[0] == call_id, reply
            self.ok.append(call_id)
        except Exception as exc:
            self.failed.append(f"{call_id}: {exc!r}")

    def _async_loop(self) -> None:
        async def run() -> None:
            client = ppy.AsyncClient(f"tcp://127.0.0.1:{self.port}", timeout=20, connect_timeout=20)
            n = 0
            while not self._stop.is_set():
                ids = [f"py-async-{n + i}" for i in range(4)]  # pipelined on one connection
                n += 4
                replies = await asyncio.gather(*(client.call("r.rec", i) for i in ids), return_exceptions=True)
                for call_id, reply in zip(ids, replies, strict=True):
                    self._check(call_id, lambda _id, r=reply: _raise_or(r))
            await client.close()

        asyncio.run(run())

    def stop(self) -> None:
        self._stop.set()
        (self.tmp / "stop").touch()
        for thread in self._threads:
            thread.join(30)
        for client in self._clients:
            client.close()
        for proc in self._php:
            out, _ = proc.communicate(timeout=30)
            summary = json.loads(out.strip().splitlines()[-1])
            self.ok += summary["ok"]
            self.failed += summary["failed"]

    def kinds(self) -> Counter[str]:
        return Counter(call_id.rsplit("-", 1)[0] for call_id in self.ok)


def _raise_or(reply: Any) -> Any:
    if isinstance(reply, BaseException):
        raise reply
    return reply


def _check_ledger(load: Load, ledger: Path) -> dict[str, int]:
    """failed / lost (answered but not run) / duplicated (ran twice) counts, all asserted 0."""
    ran = Counter(ledger.read_text().split())
    lost = [i for i in load.ok if ran[i] == 0]
    duplicated = [i for i, count in ran.items() if count > 1]
    figures = {"calls": len(load.ok), "failed": len(load.failed), "lost": len(lost), "duplicated": len(duplicated)}
    print(f"restart figures: {figures} by client: {dict(load.kinds())}")
    assert not load.failed, load.failed[:10]
    assert not lost and not duplicated, (lost[:10], duplicated[:10])
    kinds = load.kinds()
    for kind in ("php-lines-a", "php-lines-b", "php-legacy", "py-lines", "py-http", "py-legacy", "py-async"):
        assert kinds[kind] > 0, f"{kind} made no calls: {kinds}"
    return figures


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "r.py").write_text(APP.format(version="v1"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _poll(what: str, check: Callable[[], bool], within: float, output: Callable[[], str]) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {within} s:\n{output()[-3000:]}")
        time.sleep(0.05)


def _workers(app: Path, *args: str, http: bool = False, env: dict[str, str]) -> Server:
    server = Server(app, "--workers", "2", "--no-access-log", *args, http=http, env=env)
    _poll("every worker ready", lambda: "all 2 workers ready" in server.output(), 20, server.output)
    return server


def _rolls_done(server: Server) -> list[float]:
    return [float(ms) for ms in re.findall(r"SIGHUP: \d+ workers replaced in (\d+) ms", server.output())]


def test_three_sighup_rolls_under_load_fail_lose_and_duplicate_no_call(app: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    with _workers(app, http=True, env={"PPY_LEDGER": str(ledger)}) as server:
        load = Load(server.port, server.http_port, tmp_path)
        load.start()
        _poll("load running", lambda: len(load.ok) > 50, 20, server.output)
        for version in ("v2", "v3", "v4"):
            (app / "r.py").write_text(APP.format(version=version))
            done = len(_rolls_done(server))
            server.proc.send_signal(signal.SIGHUP)
            _poll("the roll", lambda n=done: len(_rolls_done(server)) > n, 20, server.output)
        load.stop()
        _check_ledger(load, ledger)
        print(f"roll of 2 workers, ms: {_rolls_done(server)}")
        assert call_once(server.url, "r.version") == "v4"  # the new code answers
        assert server.stop() == 0


def test_a_broken_edit_stops_the_roll_and_the_old_code_keeps_serving(app: Path, tmp_path: Path) -> None:
    with _workers(app, env={"PPY_LEDGER": str(tmp_path / "ledger")}) as server:
        client = ppy.Client(server.url)
        (app / "r.py").write_text("import os\nVERSION = 'v2'\nraise RuntimeError('half-deployed')\n")
        server.proc.send_signal(signal.SIGHUP)
        _poll("the roll to stop", lambda: "roll stopped" in server.output(), 20, server.output)
        assert "half-deployed" in server.output().split("roll stopped")[1].splitlines()[0]
        assert "old workers keep serving" in server.output()
        for _ in range(20):  # every worker still serves the old code
            assert client.call("r.version") == "v1"
            client.close()
        (app / "r.py").write_text(APP.format(version="v2"))  # the fix
        server.proc.send_signal(signal.SIGHUP)
        _poll("the roll", lambda: len(_rolls_done(server)) == 1, 20, server.output)
        for _ in range(20):
            assert client.call("r.version") == "v2"
            client.close()


class Holder:
    """What systemd does for ppy.socket + ppy.service: hold the listening sockets, start ``ppy serve``
    with them as fds 3 and 4 (LISTEN_FDS, LISTEN_PID = the child's pid, LISTEN_FDNAMES), restart it."""

    def __init__(self, app: Path, env: dict[str, str]) -> None:
        self.app = app
        self.env = env
        tcp = socket.create_server(("127.0.0.1", 0), backlog=4096)
        http = socket.create_server(("127.0.0.1", 0), backlog=4096)
        # Above the fds the child gets them as (3 and 4), so that the shell's redirections cannot clash.
        self.tcp = socket.socket(fileno=fcntl.fcntl(tcp.fileno(), fcntl.F_DUPFD_CLOEXEC, 100))
        self.http = socket.socket(fileno=fcntl.fcntl(http.fileno(), fcntl.F_DUPFD_CLOEXEC, 100))
        tcp.close()
        http.close()
        self.port = self.tcp.getsockname()[1]
        self.http_port = self.http.getsockname()[1]
        self.log = open(app.parent / "holder.log", "w+b")  # noqa: SIM115 - closed in close()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        tcp, http = self.tcp.fileno(), self.http.fileno()
        # The flags name other ports: a passed socket replaces binding for its name.
        serve = " ".join([*PPY, "serve", str(self.app), "--port", "1", "--http-port", "1", "--no-access-log"])
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env, "LISTEN_FDS": "2", "LISTEN_FDNAMES": "tcp:http"}

        def as_fds_3_and_4() -> None:  # in the child, before exec: where sd_listen_fds() expects them
            os.dup2(tcp, 3)
            os.dup2(http, 4)

        self.proc = subprocess.Popen(["sh", "-c", f"LISTEN_PID=$$ exec {serve}"], env=env, pass_fds=(3, 4),
                                     preexec_fn=as_fds_3_and_4, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def serving(self) -> int:
        """How many processes started so far came to serve (each prints its banner once it listens)."""
        return len(re.findall(r"serving \S+ \(\d+ entries", self.output()))

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.tcp.close()
        self.http.close()
        self.log.close()


def test_a_single_process_restarted_three_times_under_a_socket_holder_refuses_nothing(
        app: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    holder = Holder(app, {"PPY_LEDGER": str(ledger)})
    try:
        holder.start()
        _poll("ppy serve on the passed sockets", lambda: holder.serving() == 1, 20, holder.output)
        load = Load(holder.port, holder.http_port, tmp_path)
        load.start()
        _poll("load running", lambda: len(load.ok) > 50, 20, holder.output)
        for started, version in enumerate(("v2", "v3", "v4"), start=2):
            (app / "r.py").write_text(APP.format(version=version))
            assert holder.stop() == 0, holder.output()[-3000:]
            holder.start()  # as `systemctl restart ppy`: the sockets never closed
            _poll("the new process serving", lambda n=started: holder.serving() == n, 20, holder.output)
            before = len(load.ok)
            _poll("calls after the restart", lambda n=before: len(load.ok) > n + 200, 20, holder.output)
        load.stop()
        _check_ledger(load, ledger)
        with ppy.Client(f"tcp://127.0.0.1:{holder.port}") as client:
            assert client.call("r.version") == "v4"
            assert client.call("r.environ", "LISTEN_FDS") is None  # read once, not passed on to children
        assert holder.stop() == 0
    finally:
        holder.close()


def test_systemd_socket_activate_passes_named_tcp_http_and_unix_sockets(app: Path, tmp_path: Path) -> None:
    activate = require_tool("systemd-socket-activate")
    port, http_port, uds = free_port(), free_port(), tmp_path / "ppy.sock"
    log = open(tmp_path / "activate.log", "w+b")  # noqa: SIM115
    proc = subprocess.Popen(
        [activate, "-l", f"127.0.0.1:{port}", "-l", f"127.0.0.1:{http_port}", "-l", str(uds),
         "--fdname=tcp:http:uds", "-E", f"PPY_LEDGER={tmp_path / 'ledger'}", "-E", f"PYTHONPATH={ROOT / 'src'}",
         sys.executable, "-m", "ppy", "serve", str(app), "--port", "1", "--http-port", "0"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        def text() -> str:
            log.flush()
            return Path(log.name).read_text(errors="replace")

        # systemd-socket-activate listens at once and starts ppy on the first connection's arrival.
        assert call_once(f"tcp://127.0.0.1:{port}", "r.version", connect_timeout=20) == "v1"
        assert call_once(f"http://127.0.0.1:{http_port}", "r.version") == "v1"
        assert call_once(f"unix://{uds}", "r.version") == "v1"
        assert call_once(f"unix://{uds}", "r.environ", "LISTEN_PID") is None
        assert f"tcp=127.0.0.1:{port}" in text() and f"uds={uds}" in text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not uds.exists() or uds.is_socket()  # ppy never unlinks a socket systemd owns
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_a_passed_socket_with_an_unknown_name_is_a_clear_start_up_error(app: Path) -> None:
    activate = require_tool("systemd-socket-activate")
    port = free_port()
    proc = subprocess.Popen([activate, "-l", f"127.0.0.1:{port}", "--fdname=grpc", "-E", f"PYTHONPATH={ROOT / 'src'}",
                             sys.executable, "-m", "ppy", "serve", str(app)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while True:  # systemd-socket-activate starts the service on the first connection
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10):
                    break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "systemd-socket-activate never listened"
                time.sleep(0.05)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert b"named 'grpc'" in out and b"FileDescriptorName=" in out


def test_workers_serve_the_sockets_systemd_passed(app: Path, tmp_path: Path) -> None:
    activate = require_tool("systemd-socket-activate")
    port, uds = free_port(), tmp_path / "ppy.sock"
    log = open(tmp_path / "activate.log", "w+b")  # noqa: SIM115
    proc = subprocess.Popen(
        [activate, "-l", f"127.0.0.1:{port}", "-l", str(uds), "--fdname=tcp:uds", "-E", f"PYTHONPATH={ROOT / 'src'}",
         "-E", f"PPY_LEDGER={tmp_path / 'ledger'}", sys.executable, "-m", "ppy", "serve", str(app), "--workers", "2",
         "--port", "1", "--http-port", "0"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        def text() -> str:
            log.flush()
            return Path(log.name).read_text(errors="replace")

        assert call_once(f"tcp://127.0.0.1:{port}", "r.version", connect_timeout=20) == "v1"
        _poll("every worker ready", lambda: "all 2 workers ready" in text(), 20, text)
        for _ in range(20):  # fresh connections, to either worker, on the passed sockets
            with ppy.Client(f"unix://{uds}") as client:
                assert client.call("r.environ", "LISTEN_FDS") is None  # never passed on to the workers
            with ppy.Client(f"tcp://127.0.0.1:{port}") as client:
                assert client.call("r.version") == "v1"
        assert "serving sockets passed by systemd" in text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
