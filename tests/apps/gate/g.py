"""Functions that count how many of their calls run at once (tests/test_cpu_gate.py)."""

import threading
import time

_lock = threading.Lock()
_running = 0
_peak = 0


def _enter() -> None:
    global _running, _peak
    with _lock:
        _running += 1
        _peak = max(_peak, _running)


def _leave() -> None:
    global _running
    with _lock:
        _running -= 1


def crunch(ms: int = 100) -> int:
    """Compute (hold the GIL) for ``ms`` milliseconds of this thread's CPU time."""
    _enter()
    try:
        start = time.thread_time()
        n = 0
        while time.thread_time() - start < ms / 1000:
            n += 1
        return n
    finally:
        _leave()


def wait(ms: int = 100) -> int:
    """Sleep ``ms`` milliseconds: no CPU at all."""
    _enter()
    try:
        time.sleep(ms / 1000)
        return ms
    finally:
        _leave()


def peak() -> int:
    """The most calls of crunch/wait seen running at once since the last call of peak(); resets it."""
    global _peak
    with _lock:
        seen, _peak = _peak, _running
    return seen


def wait_fresh(ms: int = 100) -> int:
    """wait(), for the first-burst test only: nobody calls it before (unclassified)."""
    return wait(ms)


def crunch_fresh(ms: int = 100) -> int:
    """crunch(), for the first-burst test only: nobody calls it before (unclassified)."""
    return crunch(ms)
