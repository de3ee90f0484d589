"""The console's live-traffic ring buffer (ppy.server.observe.stats), with an explicit clock."""

from __future__ import annotations

import pytest

from ppy.server.observe.stats import OTHER, STEP, WINDOW, Stats, bucket, bucket_value, percentile


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Stats, Clock]:
    clock = Clock()
    return Stats(lambda m: m.startswith("h."), clock), clock


@pytest.mark.parametrize("seconds", [2e-6, 1e-4, 0.0123, 0.5, 7.0])
def test_buckets_are_within_ten_percent(seconds: float) -> None:
    assert abs(bucket_value(bucket(seconds)) - seconds) / seconds < 0.1


def test_percentiles_of_a_known_distribution() -> None:
    stats, _ = make()
    for i in range(1, 101):  # 1 ms .. 100 ms
        stats.observe({("h.x", "http", 0): [i / 1000]})
    snap = stats.snapshot()["methods"]["h.x"]
    assert snap["calls"] == 100
    assert snap["p50_ms"] == pytest.approx(50, rel=0.1)
    assert snap["p99_ms"] == pytest.approx(99, rel=0.1)
    assert percentile({}, 0.5) is None


def test_rates_errors_series_and_window() -> None:
    stats, clock = make()
    for _ in range(20):
        clock.now += 1
        for i in range(10):
            stats.observe({("h.x", "lines", -32000 if i == 0 else 0): [0.001]})
    snap = stats.snapshot()
    m = snap["methods"]["h.x"]
    assert (m["calls"], m["errors"]) == (200, 20)
    assert m["rate"] == pytest.approx(10)
    assert m["error_rate"] == pytest.approx(0.1)
    assert len(m["series"]["rate"]) == WINDOW // STEP
    assert m["series"]["rate"][-1] == pytest.approx(10)  # the newest STEP had 10 calls each second
    assert m["series"]["rate"][0] == 0 and m["series"]["p50_ms"][0] is None
    assert sum(m["series"]["rate"]) * STEP == pytest.approx(200)
    assert snap["total"]["calls"] == 200

    clock.now += WINDOW + 1  # everything ages out, the method is forgotten
    assert stats.snapshot()["methods"] == {}
    assert stats.methods == {}


def test_unknown_methods_share_one_row_and_memory_is_bounded() -> None:
    stats, clock = make()
    for i in range(1000):
        stats.observe({(f"made.up{i}", "http", -32601): [0.0001]})
    assert set(stats.methods) == {OTHER}
    for _ in range(WINDOW * 2):
        clock.now += 1
        stats.observe({("h.x", "http", 0): [0.001]})
    assert len(stats.methods["h.x"]) <= WINDOW
