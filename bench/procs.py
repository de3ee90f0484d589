"""Start, pin, measure and stop the servers and the load generator of a benchmark run.

Every server is a subprocess started by this run (never one left over from
another), pinned with ``taskset`` to the server core; the C load generator
runs pinned to the other core.  CPU time is read from ``/proc/<pid>/stat``
(utime + stime of the process and all its descendants, so ``--workers``
children count), memory from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BUILD = BENCH / "build"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE = "0"
CLIENT_CORE = "1"


def build() -> None:
    """Compile the C load generator and floor server when their sources are newer (make bench does it too)."""
    BUILD.mkdir(exist_ok=True)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise SystemExit("bench: no C compiler (cc); install gcc (apt-get install gcc)")
    for name in ("loadgen", "cserver"):
        src, out = BENCH / f"{name}.c", BUILD / name
        if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
            subprocess.run([cc, "-O2", "-Wall", "-o", str(out), str(src)], check=True)


def pinned(core: str | None) -> list[str]:
    if core is None or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", core]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s")


class Server:
    """One server subprocess on its own port(s); a context manager that always stops it."""

    def __init__(self, name: str, argv: list[str], port: int, *, core: str | None = SERVER_CORE,
                 wait_ports: tuple[int, ...] = (), log: Path | None = None) -> None:
        self.name = name
        self.port = port
        self.log_path = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"ppy-bench-{name}-{port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([*pinned(core), *argv], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=ROOT, start_new_session=True)
        try:
            for p in (port, *wait_ports):
                wait_port(p, self.proc)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"{name}: could not start; its log says:\n{self.log_path.read_text()[-2000:]}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return sum(_cpu_ticks(pid) for pid in [self.pid, *descendants(self.pid)]) / CLK_TCK

    def rss_mb(self) -> float:
        return sum(_rss_kb(pid) for pid in [self.pid, *descendants(self.pid)]) / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def loadgen(port: int, *, dialect: str = "lines", connections: int = 32, pipeline: int = 1,
            duration: float = 5.0, warmup: float = 0.5, method: str = "h.hello", params: str = "[]",
            core: str | None = CLIENT_CORE) -> dict[str, Any]:
    """Run the C load generator once; its JSON summary."""
    argv = [*pinned(core), str(BUILD / "loadgen"), "--port", str(port), "--dialect", dialect,
            "--connections", str(connections), "--pipeline", str(pipeline), "--duration", str(duration),
            "--warmup", str(warmup), "--method", method]
    params_file = None
    if len(params) > 1000:  # 64 KiB of params: pass a file, not an argv string
        params_file = BUILD / f"params-{len(params)}.json"
        params_file.write_text(params)
        argv += ["--params-file", str(params_file)]
    else:
        argv += ["--params", params]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + warmup + 60)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed ({out.returncode}): {out.stderr.strip()}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def python() -> str:
    return sys.executable


@functools.cache
def python27() -> str | None:
    """A working Python 2.7 for the original seed baseline, or None (the Python 3 port is used alone then)."""
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python2.7")))
    candidates = [shutil.which("python2.7"), *pyenv]
    for exe in candidates:
        if exe and subprocess.run([exe, "-c", "import sys; assert sys.version_info[0] == 2"],
                                  capture_output=True, timeout=10).returncode == 0:
            return exe
    return None


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (inherited by the servers); the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
