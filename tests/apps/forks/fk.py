"""Functions that fork or start processes, for the fork-safety and --isolate process-group tests."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def start_sleep(pid_file: str, hold_s: float = 60.0) -> int:
    """Start ``sleep 301`` as a subprocess, write its pid, then hold the call for ``hold_s``."""
    child = subprocess.Popen(["sleep", "301"])
    Path(pid_file).write_text(str(child.pid))
    time.sleep(hold_s)
    return child.pid


def fork_and_return(tag: str, child_s: float = 0.0, pid_file: str = "") -> str:
    """Fork; the child sleeps ``child_s`` and then *returns* like the parent (as careless code does)."""
    pid = os.fork()
    if pid == 0:
        if pid_file:
            Path(pid_file).write_text(str(os.getpid()))
        time.sleep(child_s)
        return f"child of {tag}"
    return f"parent of {tag}"


def pid() -> int:
    return os.getpid()


async def afork_and_return(tag: str) -> str:
    """Fork on the event loop thread; the child returns like the parent."""
    pid = os.fork()
    return f"{'child' if pid == 0 else 'parent'} of {tag}"


async def afork_after_await(tag: str) -> str:
    """Fork in a later step of the coroutine; the child awaits again (it would run the server's loop)."""
    import asyncio

    await asyncio.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        await asyncio.sleep(0.05)
        return f"child of {tag}"
    return f"parent of {tag}"
