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

    ppy_worker_respawn_seconds{pool}              worker replacement time (pool: workers, isolate)

Multiprocess mode (``--workers``, ``PROMETHEUS_MULTIPROC_DIR`` set by the
supervisor): ``Counter``/``Histogram`` values are file-backed and a scrape
sums every worker's; the live values are published by
:class:`ppy.server.multiproc.Publisher` instead of the ``_Live`` collector.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from ppy.server import multiproc
from ppy.server.state import ServerState
from ppy.server.stats import OTHER

OUTCOMES = {
    0: "ok",
    -32700: "parse_error",
    -32600: "invalid_request",
    -32601: "method_not_found",
    -32602: "invalid_params",
    -32603: "internal_error",
    -32000: "application_error",
    -32001: "timeout",
    -32002: "overloaded",
    -32003: "unauthorized",
    -32004: "worker_crashed",
}
#: Error codes that mean a configured limit was hit, and the limit's name.
LIMIT_CODES = {-32002: "max_inflight", -32001: "timeout"}
BUILTINS = frozenset({"rpc.ping", "rpc.discover", "rpc.auth"})
#: 100 µs (a bare in-process call) to 30 s (the default --timeout) and past it.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
           5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.registry = CollectorRegistry()
        self.calls = Counter("ppy_calls", "Calls answered, by method, dialect and outcome",
                             ["method", "dialect", "outcome"], registry=self.registry)
        self.latency = Histogram("ppy_call_duration_seconds", "Call latency from decode to encoded reply",
                                 ["method"], buckets=BUCKETS, registry=self.registry)
        self.trips: Tally[str] = Tally()
        self.http_connections: Callable[[], int] = lambda: 0  # set by the in-process HTTP server
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.registry.register(_Live(self))
        self.respawns = Histogram("ppy_worker_respawn_seconds", multiproc.RESPAWN_HELP, ["pool"],
                                  buckets=multiproc.RESPAWN_BUCKETS, registry=self.registry)
        observers = getattr(state.dispatcher.runner, "respawn_observers", None)
        if observers is not None:  # --isolate: the pool reports each replacement
            observers.append(lambda seconds, _why: self.respawns.labels("isolate").observe(seconds))
        self.shared = multiproc.Publisher(self) if multiproc.enabled() else None

    def known(self, method: str) -> bool:
        return method in self.state.dispatcher.registry.functions or method in BUILTINS

    def observe(self, method: str, dialect: str, code: int, seconds: float) -> None:
        """The dispatcher's observer hook: label children are cached, so a call costs two dict hits."""
        key = (method, dialect, code)
        children = self._children.get(key)
        if children is None:
            label = method if self.known(method) else OTHER
            outcome = OUTCOMES.get(code, str(code))
            children = (self.calls.labels(label, dialect, outcome), self.latency.labels(label))
            if label != OTHER:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        limit = LIMIT_CODES.get(code)
        if limit is not None:
            self.trips[limit] += 1

    def trip(self, limit: str) -> None:
        """A limit the HTTP front end enforces itself (body size, request time)."""
        self.trips[limit] += 1

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asked for (Prometheus text, or OpenMetrics)."""
        if self.shared is not None:
            return self.shared.render(accept)
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _Live:
    """Values read from the server's state at scrape time rather than counted per event."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        state = self.metrics.state
        yield GaugeMetricFamily("ppy_calls_in_flight", "Calls running now", value=state.dispatcher.inflight)
        conns = GaugeMetricFamily("ppy_connections_open", "Connections open now, by dialect", labels=["dialect"])
        for dialect in ("legacy", "lines"):
            conns.add_metric([dialect], state.by_dialect.get(dialect, 0))
        conns.add_metric(["http"], self.metrics.http_connections())
        yield conns
        trips = CounterMetricFamily("ppy_limit_trips", "Requests refused or cut short by a limit, by limit",
                                    labels=["limit"])
        counts = dict(self.metrics.trips)
        counts["max_connections"] = state.refused
        for limit in ("max_inflight", "timeout", "max_connections", "max_frame_bytes", "request_timeout"):
            trips.add_metric([limit], counts.get(limit, 0))
        yield trips
