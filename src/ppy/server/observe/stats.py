"""Live traffic for the web console: calls/s, error rate, p50/p99 per function, last few minutes.

Prometheus keeps cumulative counters for scrapers; a person looking at the
console wants "what is happening now", which cumulative histograms cannot
answer without a time-series database.  So the server keeps its own small
ring of one-second slots per method, fed by the dispatcher's observer hook:

    method -> deque[Slot(second, calls, errors, {latency bucket: count})]

Memory is bounded: at most ``WINDOW`` slots per method, methods are the
registry's own (anything else is counted as ``OTHER``), and latencies go to
logarithmic buckets ``RATIO`` apart (so a percentile is exact to about ±10 %,
plenty for a chart).  Everything runs on the event loop thread: no locks.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ppy.app.dispatch import Observations

WINDOW = 300  # seconds of history the console shows ("the last minutes")
STEP = 5  # seconds per chart point: 60 points per chart
RATE_SPAN = 10  # seconds averaged for the "calls/s now" figure
RATIO = 1.2  # latency bucket width: bucket k holds [MIN_LATENCY * RATIO**k, MIN_LATENCY * RATIO**(k+1))
MIN_LATENCY = 1e-6
MAX_BUCKET = 120  # 1 µs * 1.2**120 ≈ 3 hours: every real deadline fits
OTHER = "(other)"  # unknown methods share one row, so clients cannot grow the table


#: Lower edges of buckets 1..MAX_BUCKET: a C bisection finds a bucket in ~60 ns (math.log: ~250 ns).
_EDGES = [MIN_LATENCY * RATIO ** k for k in range(1, MAX_BUCKET + 1)]


def bucket(seconds: float) -> int:
    return bisect_right(_EDGES, seconds)


def bucket_value(k: int) -> float:
    """The geometric middle of bucket ``k``, in seconds."""
    return float(MIN_LATENCY * RATIO ** (k + 0.5))


@dataclass(slots=True)
class Slot:
    second: int
    calls: int = 0
    errors: int = 0
    latency: dict[int, int] = field(default_factory=dict)


def percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a bucket histogram, in milliseconds; None when empty."""
    total = sum(hist.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return round(bucket_value(k) * 1000, 3)
    return round(bucket_value(max(hist)) * 1000, 3)  # pragma: no cover - rank <= total always stops above


def _merge(slots: Iterable[Slot]) -> tuple[int, int, dict[int, int]]:
    calls = errors = 0
    hist: dict[int, int] = {}
    for slot in slots:
        calls += slot.calls
        errors += slot.errors
        for k, n in slot.latency.items():
            hist[k] = hist.get(k, 0) + n
    return calls, errors, hist


class Stats:
    """Per-method one-second slots over the last ``WINDOW`` seconds."""

    def __init__(self, known: Callable[[str], bool], clock: Callable[[], float] = time.time) -> None:
        self.known = known
        self.clock = clock
        self.methods: dict[str, deque[Slot]] = {}
        self._current: dict[str, Slot] = {}  # known method -> its latest slot

    def observe(self, observations: Observations) -> None:
        """The dispatcher's observer hook: the calls one event-loop turn finished, grouped by method,
        dialect and outcome.  A method's slot of the current second is one dict hit away; only the
        first call of a second (or of an unknown method) looks further."""
        now = int(self.clock())
        current, edges = self._current, _EDGES
        for (method, _dialect, code), times in observations.items():
            slot = current.get(method)
            if slot is None or slot.second != now:
                slot = self._slot(method, now)
            slot.calls += len(times)
            if code:
                slot.errors += len(times)
            latency = slot.latency
            for seconds in times:
                k = bisect_right(edges, seconds)  # bucket(), inlined: this runs once per call
                latency[k] = latency.get(k, 0) + 1

    def _slot(self, method: str, now: int) -> Slot:
        known = self.known(method)
        label = method if known else OTHER
        slots = self.methods.get(label)
        if slots is None:
            slots = self.methods[label] = deque()
        if not slots or slots[-1].second != now:
            slots.append(Slot(now))
            while slots[0].second <= now - WINDOW:
                slots.popleft()
        if known:  # invented names are never keys, so clients cannot grow this dict
            self._current[method] = slots[-1]
        return slots[-1]

    def export(self) -> dict[str, list[list[Any]]]:
        """This process's slots as plain JSON-able lists, for the other ``--workers`` to merge."""
        return {method: [[s.second, s.calls, s.errors, s.latency] for s in slots]
                for method, slots in self.methods.items()}

    def snapshot(self, others: Iterable[dict[str, list[list[Any]]]] = ()) -> dict[str, Any]:
        """What the console draws: per method, totals over the window and one point per ``STEP``.

        ``others`` are :meth:`export` results of the other ``--workers`` processes, merged in so that
        the console shows the whole server whichever worker answers it.
        """
        now = int(self.clock())
        start = now - WINDOW + 1
        methods: dict[str, Any] = {}
        every: list[Slot] = []
        for method in list(self.methods):
            if not any(s.second >= start for s in self.methods[method]):
                del self.methods[method]  # idle for the whole window: forget it
                self._current.pop(method, None)
        by_method: dict[str, list[Slot]] = {m: list(slots) for m, slots in self.methods.items()}
        for exported in others:
            for method, rows in exported.items():
                by_method.setdefault(method, []).extend(
                    Slot(second, calls, errors, {int(k): n for k, n in latency.items()})
                    for second, calls, errors, latency in rows)
        for method, all_slots in by_method.items():
            slots = [s for s in all_slots if s.second >= start]
            if not slots:
                continue
            every.extend(slots)
            methods[method] = self._describe(slots, now)
        return {"window": WINDOW, "step": STEP, "now": now, "methods": methods,
                "total": self._describe(every, now)}

    def _describe(self, slots: list[Slot], now: int) -> dict[str, Any]:
        calls, errors, hist = _merge(slots)
        recent = sum(s.calls for s in slots if s.second > now - RATE_SPAN)
        points = WINDOW // STEP
        first = now - points * STEP + 1
        bins: list[list[Slot]] = [[] for _ in range(points)]
        for slot in slots:
            index = (slot.second - first) // STEP
            if 0 <= index < points:
                bins[index].append(slot)
        series: dict[str, list[float | None]] = {"rate": [], "error_rate": [], "p50_ms": [], "p99_ms": []}
        for group in bins:
            c, e, h = _merge(group)
            series["rate"].append(round(c / STEP, 3))
            series["error_rate"].append(round(e / c, 4) if c else None)
            series["p50_ms"].append(percentile(h, 0.50))
            series["p99_ms"].append(percentile(h, 0.99))
        return {
            "calls": calls,
            "errors": errors,
            "rate": round(recent / RATE_SPAN, 3),
            "error_rate": round(errors / calls, 4) if calls else 0.0,
            "p50_ms": percentile(hist, 0.50),
            "p99_ms": percentile(hist, 0.99),
            "series": series,
        }
