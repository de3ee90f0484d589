"""Functions that misbehave on purpose, for the --isolate, --workers and HAProxy tests."""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


def pid() -> int:
    """The process id running the call (a worker's, under --isolate)."""
    return os.getpid()


def add(a: int, b: int) -> int:
    return a + b


def sleep(ms: int = 100) -> int:
    """A healthy call that takes a while, to have calls in flight beside a crash."""
    time.sleep(ms / 1000)
    return os.getpid()


def hang(pid_file: str) -> None:
    """Write the running process id, then never return."""
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(1)


def exit3() -> None:
    """Leave the process at once, skipping every handler."""
    os._exit(3)


def segfault() -> None:
    """Crash the process the way a broken C extension does."""
    ctypes.string_at(0)


def hog(mb: int = 400, hold_s: float = 5.0) -> int:
    """Grow by 10 MB steps up to ``mb`` MB (touching every page), then hold it."""
    chunks = []
    for _ in range(mb // 10):
        chunks.append(b"x" * (10 * 1024 * 1024))
        time.sleep(0.005)
    time.sleep(hold_s)
    return len(chunks)


def burn(seconds: float = 1.0) -> int:
    """Spin the CPU for ``seconds`` (pure Python: holds the GIL), return the pid."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return os.getpid()


def boom(message: str) -> None:
    raise ValueError(message)


@dataclass
class Line:
    sku: str
    qty: int
    at: datetime


def line_total(lines: list[Line], price: float) -> dict[str, object]:
    """Annotated parameters survive the JSON trip to the worker as real dataclasses/datetimes."""
    return {"qty": sum(line.qty for line in lines), "total": price * sum(line.qty for line in lines),
            "types": sorted({type(line).__name__ + "/" + type(line.at).__name__ for line in lines})}


def record(call_id: str, log_path: str) -> str:
    """Append ``call_id`` to a file (one O_APPEND write per call), to count calls exactly."""
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{call_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return call_id


async def ahello(name: str = "world") -> str:
    return f"hello, {name} from {os.getpid()}"
