"""Module state: proves modules are imported once, and that notifications run."""

import itertools
import os

IMPORTED_IN = os.getpid()
_imports = itertools.count(1)
IMPORT_NUMBER = next(_imports)
_counters: dict[str, int] = {}


def bump(key: str) -> int:
    _counters[key] = _counters.get(key, 0) + 1
    return _counters[key]


def count(key: str) -> int:
    return _counters.get(key, 0)


def identity() -> list[int]:
    return [IMPORTED_IN, id(_counters)]
