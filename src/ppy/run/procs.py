"""Worker processes of ``--isolate``: how one ended, in words, and how to stop it with what it started."""

from __future__ import annotations

import asyncio
import os
import signal


def describe_exit(returncode: int | None, *, ours: bool = False) -> str:
    """``exit code 3``, ``killed by SIGSEGV``; ``ours`` when the server itself sent the SIGKILL."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if name == "SIGKILL":
            return "stopped by the server (SIGKILL)" if ours else "killed by SIGKILL (the out-of-memory killer?)"
        return f"killed by {name}"
    return f"exit code {returncode}"


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the worker's process group (it leads its own, so this is it and everything it started).

    Also called after the worker itself has exited: the group outlives its leader while any member
    lives, and the kernel does not reuse the leader's pid for another group before the group is gone.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass
