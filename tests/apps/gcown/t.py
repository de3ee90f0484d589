"""An app that sets its own garbage-collector thresholds at import: the server must keep them."""

import gc

gc.set_threshold(1234, 5, 6)


def threshold() -> list[int]:
    return list(gc.get_threshold())
