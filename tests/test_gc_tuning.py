"""The server raises the cyclic collector's young threshold (docs/performance.md), unless the app chose its own."""

from __future__ import annotations

import gc

import ppy
from conftest import APPS, Server
from ppy.server.main import GC_YOUNG_THRESHOLD


def _threshold(app: str, *args: str) -> list[int]:
    server = Server(APPS / app, *args)
    try:
        with ppy.Client(server.url, timeout=10) as client:
            return list(client.call("t.threshold"))
    finally:
        assert server.stop() == 0, server.output()


def test_the_young_threshold_is_raised_and_the_older_ones_kept() -> None:
    _, older, oldest = gc.get_threshold()  # Python's defaults, as the server process starts with them
    assert _threshold("gctune") == [GC_YOUNG_THRESHOLD, older, oldest]


def test_under_workers_too() -> None:
    assert _threshold("gctune", "--workers", "2")[0] == GC_YOUNG_THRESHOLD


def test_an_app_that_sets_its_own_thresholds_keeps_them() -> None:
    assert _threshold("gcown") == [1234, 5, 6]
