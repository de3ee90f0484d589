"""Sync functions that are fast on their first call, so later calls take the task-free path
(Dispatcher.begin → ThreadRunner.start_sync → lane callback); tests/test_callback_path.py."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


def echo(*args: Any) -> list[Any]:
    return list(args)


def raises(fail: bool = False) -> str:
    if fail:
        raise LookupError("asked to fail")
    return "ok"


class Opaque:
    """Not JSON-encodable by any rule of docs/app-folder.md."""


def maybe_opaque(opaque: bool = False) -> Any:
    return Opaque() if opaque else "plain"


def maybe_exit(code: int = 0) -> str:
    if code:
        sys.exit(code)
    return "stayed"


def sleep(seconds: float = 0.0) -> float:
    time.sleep(seconds)
    return seconds


def touch(path: str, delay: float = 0.0) -> str:
    """Write ``path`` after ``delay`` seconds: proof that the call ran to its end."""
    time.sleep(delay)
    Path(path).write_text("done")
    return path
