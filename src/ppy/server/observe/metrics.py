"""Prometheus metrics for ``GET /metrics``, fed by the dispatcher's observer hook.

    ppy_calls_total{method, dialect, outcome}     calls answered (outcome: ok, invalid_params, timeout, ...)
    ppy_call_duration_seconds{method}             latency histogram
    ppy_calls_in_flight                           calls running now
    ppy_connections_open{dialect}                 legacy / lines / http connections open now
    ppy_limit_trips_total{limit}                  max_inflight, timeout, max_connections, max_frame_bytes,
                                                  request_timeout

Each app gets its own :class:`CollectorRegistry` (several apps in one process,
as in tests or when mounted twice, never clash).  The ``method`` label only
takes the registry's methods and the ``rpc.`` built-ins; anything else a
client invents is ``(other)``, so a client cannot grow the label set.

    ppy_worker_respawn_seconds{pool}              worker replacement time (pool: workers, isolate); only
                                                  under --workers (after a first respawn) or --isolate
    process_*, python_info                        prometheus_client's process and platform collectors
                                                  (resident memory, open fds, CPU seconds, start time)

Conventions checked by ``promtool check metrics`` (tests/test_metrics_conventions.py): no ``*_created``
series (``disable_created_metrics``: a process-wide prometheus_client setting, so an app that mounts
ppy's ASGI app gets it too), and OpenMetrics ``# UNIT`` for every family named ``*_seconds`` or
``*_bytes`` (:class:`ppy.server.observe.shared.Units`).
    ppy_streams_total{method, outcome}            streams ended (completed, cancelled, timed_out, failed)
    ppy_stream_items_total{method}                items sent by streams
    ppy_stream_duration_seconds{method}           a stream's whole duration

In one process, calls are counted into plain ints and lists (the event-loop
thread is the only writer, so no lock) and the families are built when
scraped (``_Counted``).  Multiprocess mode (``--workers``,
``PROMETHEUS_MULTIPROC_DIR`` set by the supervisor): the observer is
``observe_shared``, feeding file-backed ``Counter``/``Histogram`` values that a
scrape sums over every worker; the live values are published by
:class:`ppy.server.observe.shared.Publisher` instead of the ``_Live`` collector,
and so are the process figures (``process_*`` per worker, labelled by ``pid``;
``process_cpu_seconds_total`` summed over every worker that ever ran).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from ppy.app.dispatch import Observations
from ppy.errors import CODES
from ppy.server.observe import shared as multiproc
from ppy.server.observe.stats import OTHER
from ppy.server.state import ServerState
from ppy.wire.model import Dialect

OUTCOMES = {0: "ok", **{row.code: row.outcome for row in CODES}}
#: Error codes that mean a configured limit was hit, and the limit's name.
LIMIT_CODES = {-32002: "max_inflight", -32001: "timeout"}
BUILTINS = frozenset({"rpc.ping", "rpc.discover", "rpc.auth"})
#: 100 µs (a bare in-process call) to 30 s (the default --timeout) and past it.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
           5.0, 10.0, 30.0, 60.0)
BOUNDS = [floatToGoString(b) for b in BUCKETS]  # type: ignore[no-untyped-call]
BOUNDS.append("+Inf")  # the "le" labels prometheus_client writes
CALLS_HELP = "Calls answered, by method, dialect and outcome"
disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double every counter and histogram for a value nobody graphs
LATENCY_HELP = "Call latency from decode to encoded reply"


class _Row:
    """One ``ppy_calls_total`` series and the latency histogram of its method (shared by its dialects)."""

    __slots__ = ("calls", "hist")

    def __init__(self, hist: _Hist) -> None:
        self.calls = 0
        self.hist = hist


class _Hist:
    """Non-cumulative bucket counts (the last one is +Inf) and the sum, for one method."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


#: Stream durations: from a quick list to a long model answer.
STREAM_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """Counts calls into plain ints; the Prometheus families are built only when scraped.

    ``Counter.inc``/``Histogram.observe`` take a lock each and cost ~1.5 µs per
    call between them (15-22% of a fast call's server CPU in the profile); a
    dict hit and three integer additions on the event-loop thread need no lock.
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.registry = CollectorRegistry()
        self.trips: Tally[str] = Tally()
        self.http_connections: Callable[[], int] = lambda: 0  # set by the in-process HTTP server
        #: (method as sent, dialect, code) -> its row; methods outside the label set are not keys here.
        self._rows: dict[tuple[str, str, int], _Row] = {}
        #: (method label, dialect, outcome) -> row, in creation order: what a scrape reports.
        self.series: dict[tuple[str, str, str], _Row] = {}
        self.hists: dict[str, _Hist] = {}
        # --workers: values must be file-backed to be summed over the workers, so they go to
        # prometheus_client's own (locked) metrics; a scrape reads those files.
        self.observer: Callable[[Observations], None] = self.observe
        self.shared = multiproc.Publisher(self) if multiproc.enabled() else None
        if self.shared is not None:
            self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
            self._calls = Counter("ppy_calls", CALLS_HELP, ["method", "dialect", "outcome"], registry=None)
            self._latency = Histogram("ppy_call_duration_seconds", LATENCY_HELP, ["method"], buckets=BUCKETS,
                                      registry=None)
            self.observer = self.observe_shared
        else:
            self.registry.register(_Counted(self))
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.registry.register(_Live(self))
        runner = state.dispatcher.runner
        if runner.isolated:  # --isolate: the pool reports each replacement (threads never do)
            respawns = Histogram("ppy_worker_respawn_seconds", multiproc.RESPAWN_HELP, ["pool"], unit="seconds",
                                 buckets=multiproc.RESPAWN_BUCKETS, registry=self.registry).labels("isolate")
            runner.respawn_observers.append(lambda seconds, _why: respawns.observe(seconds))
        # [stream] streams are few and long: prometheus_client's own (locked) metrics are cheap enough.
        self.streams = Counter("ppy_streams", "Streams ended, by method and outcome (completed, cancelled, "
                               "timed_out, failed)", ["method", "outcome"], registry=self.registry)
        self.stream_items = Counter("ppy_stream_items", "Items sent by streaming calls, by method", ["method"],
                                    registry=self.registry)
        self.stream_seconds = Histogram("ppy_stream_duration_seconds", "Duration of whole streams, by method",
                                        ["method"], unit="seconds", buckets=STREAM_BUCKETS, registry=self.registry)
        stream_observers = getattr(state.dispatcher, "stream_observers", None)
        if stream_observers is not None:
            stream_observers.append(self.observe_stream)

    def observe_stream(self, method: str, outcome: str, items: int, seconds: float) -> None:
        label = method if self.known(method) else "(other)"
        self.streams.labels(label, outcome).inc()
        if items:
            self.stream_items.labels(label).inc(items)
        self.stream_seconds.labels(label).observe(seconds)

    def known(self, method: str) -> bool:
        return method in self.state.dispatcher.registry.functions or method in BUILTINS

    def observe(self, observations: Observations) -> None:
        """The dispatcher's observer hook (the calls of one loop turn, grouped): one dict hit per kind of
        call, then a bisection and two additions per call."""
        rows, buckets = self._rows, BUCKETS
        for key, times in observations.items():
            row = rows.get(key)
            if row is None:
                row = self._row(*key)
            row.calls += len(times)
            hist = row.hist
            counts, total = hist.counts, hist.total
            for seconds in times:
                counts[bisect_left(buckets, seconds)] += 1  # Prometheus buckets are "<= le"
                total += seconds
            hist.total = total
            limit = LIMIT_CODES.get(key[2]) if key[2] else None
            if limit is not None:
                self.trips[limit] += len(times)

    def _row(self, method: str, dialect: str, code: int) -> _Row:
        label = method if self.known(method) else OTHER
        outcome = OUTCOMES.get(code, str(code))
        series = (label, dialect, outcome)
        row = self.series.get(series)
        if row is None:
            hist = self.hists.get(label)
            if hist is None:
                hist = self.hists[label] = _Hist()
            row = self.series[series] = _Row(hist)
        if label != OTHER:  # invented names share the (other) row without growing this cache
            self._rows[(method, dialect, code)] = row
        return row

    def observe_shared(self, observations: Observations) -> None:
        """The observer under ``--workers``: file-backed prometheus_client metrics (label children cached)."""
        for key, times in observations.items():
            method, dialect, code = key
            children = self._children.get(key)
            if children is None:
                label = method if self.known(method) else OTHER
                outcome = OUTCOMES.get(code, str(code))
                children = (self._calls.labels(label, dialect, outcome), self._latency.labels(label))
                if label != OTHER:
                    self._children[key] = children
            children[0].inc(len(times))
            for seconds in times:
                children[1].observe(seconds)
            limit = LIMIT_CODES.get(code)
            if limit is not None:
                self.trips[limit] += len(times)

    def trip(self, limit: str) -> None:
        """A limit the HTTP front end enforces itself (body size, request time)."""
        self.trips[limit] += 1

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asked for (Prometheus text, or OpenMetrics)."""
        if self.shared is not None:
            return self.shared.render(accept)
        encoder, content_type = choose_encoder(accept or "")
        return encoder(multiproc.Units(self.registry)), content_type


class _Counted:
    """``ppy_calls_total`` and ``ppy_call_duration_seconds`` built from the plain counts at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        metrics = self.metrics
        calls = CounterMetricFamily("ppy_calls", CALLS_HELP, labels=["method", "dialect", "outcome"])
        for series, row in list(metrics.series.items()):
            calls.add_metric(series, row.calls)
        yield calls
        latency = HistogramMetricFamily("ppy_call_duration_seconds", LATENCY_HELP, labels=["method"], unit="seconds")
        for label, hist in list(metrics.hists.items()):
            cumulative: list[tuple[str, float]] = []
            seen = 0
            for bound, count in zip(BOUNDS, hist.counts, strict=True):
                seen += count
                cumulative.append((bound, seen))
            latency.add_metric([label], cumulative, hist.total)
        yield latency


class _Live:
    """Values read from the server's state at scrape time rather than counted per event."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        state = self.metrics.state
        yield GaugeMetricFamily("ppy_calls_in_flight", "Calls running now", value=state.dispatcher.inflight)
        conns = GaugeMetricFamily("ppy_connections_open", "Connections open now, by dialect", labels=["dialect"])
        for dialect in (Dialect.LEGACY, Dialect.LINES):  # TCP; HTTP connections are counted by the edge
            conns.add_metric([dialect], state.by_dialect.get(dialect, 0))
        conns.add_metric([Dialect.HTTP], self.metrics.http_connections())
        yield conns
        trips = CounterMetricFamily("ppy_limit_trips", "Requests refused or cut short by a limit, by limit",
                                    labels=["limit"])
        counts = dict(self.metrics.trips)
        counts["max_connections"] = state.refused
        for limit in ("max_inflight", "timeout", "max_connections", "max_frame_bytes", "request_timeout"):
            trips.add_metric([limit], counts.get(limit, 0))
        yield trips
