"""Reports the serving process's garbage-collector thresholds (tests/test_gc_tuning.py)."""

import gc


def threshold() -> list[int]:
    return list(gc.get_threshold())
