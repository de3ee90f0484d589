"""Metrics that stay correct across ``--workers`` processes (prometheus_client multiprocess mode).

The supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder before it
starts its children, so every ``Counter``/``Histogram`` they create is backed
by a file there, and a scrape answered by *any* worker sums all of them with
``MultiProcessCollector`` (the supervisor marks dead workers dead, and
removes the folder at exit).

Live values (calls in flight, open connections) live in each worker's
memory; :class:`Publisher` copies them into ``livesum`` gauges (dropped when
their process dies) when a scrape comes in and once a second otherwise, and
the limit-trip tallies into a multiprocess counter.  A scrape therefore sees
its own worker's values exactly and the others' at most a second old.

Process figures are per process, so they are published the same way
(:class:`ProcessShare`): ``process_resident_memory_bytes``, ``process_open_fds``
and the other ``process_*`` gauges once per live worker with a ``pid`` label
(a dead worker's series go with it), and ``process_cpu_seconds_total`` as a
counter summed over every worker that ever ran (so it never goes back when
one is replaced).  ``python_info`` is the same in every worker: written once.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from ppy.server.state import ServerState
from ppy.wire.model import Dialect

# prometheus_client is imported lazily on purpose: it picks file-backed values at *import* time, so
# the supervisor must set ENV before anything imports it.
ENV = "PROMETHEUS_MULTIPROC_DIR"
REFRESH = 1.0  # seconds between publications of a worker's live values
#: 10 ms (a forked process) to 60 s (an app that imports for a minute).
RESPAWN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RESPAWN_HELP = "Time from a worker's end to its replacement serving, by pool (workers, isolate)"
LIMITS = ("max_inflight", "timeout", "max_connections", "max_frame_bytes", "request_timeout")


def every_refresh(publish: Callable[[], None]) -> None:
    """Call ``publish`` now and every ``REFRESH`` seconds while the event loop runs.

    Built outside a running loop (an ASGI factory), it publishes once; scrapes publish again.
    """
    publish()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return

    def tick() -> None:
        if not loop.is_closed():
            publish()
            loop.call_later(REFRESH, tick)

    loop.call_later(REFRESH, tick)


def enabled() -> bool:
    return bool(os.environ.get(ENV))


class Source(Protocol):
    """What the publisher reads: ppy.server.observe.metrics.Metrics."""

    state: ServerState
    trips: Tally[str]

    def http_connections(self) -> int: ...


class Publisher:
    def __init__(self, source: Source) -> None:
        from prometheus_client import Counter, Gauge

        self.source = source
        self.inflight = Gauge("ppy_calls_in_flight", "Calls running now", multiprocess_mode="livesum",
                              registry=None)
        self.connections = Gauge("ppy_connections_open", "Connections open now, by dialect", ["dialect"],
                                 multiprocess_mode="livesum", registry=None)
        self.trips = Counter("ppy_limit_trips", "Requests refused or cut short by a limit, by limit", ["limit"],
                             registry=None)
        self._published: Tally[str] = Tally()
        self.process = ProcessShare()
        every_refresh(self.publish)

    def publish(self) -> None:
        self.process.publish()
        state = self.source.state
        self.inflight.set(state.dispatcher.inflight)
        for dialect in (Dialect.LEGACY, Dialect.LINES):  # TCP; HTTP connections are counted by the edge
            self.connections.labels(dialect).set(state.by_dialect.get(dialect, 0))
        self.connections.labels(Dialect.HTTP).set(self.source.http_connections())
        counts = Tally(self.source.trips)
        counts["max_connections"] = state.refused
        for limit in LIMITS:
            delta = counts.get(limit, 0) - self._published.get(limit, 0)
            if delta > 0:
                self.trips.labels(limit).inc(delta)
                self._published[limit] = counts[limit]
            elif limit not in self._published:
                self.trips.labels(limit)  # every limit shows, at 0 until tripped
                self._published[limit] = 0

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """Every worker's metrics, summed; this worker's live values are published first."""
        from prometheus_client import CollectorRegistry, PlatformCollector, multiprocess
        from prometheus_client.exposition import choose_encoder

        self.publish()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        PlatformCollector(registry=registry)
        encoder, content_type = choose_encoder(accept or "")
        body: Any = encoder(Units(registry))
        return body, content_type


class ProcessShare:
    """This worker's ``process_*`` figures (prometheus_client's ``ProcessCollector``), as multiprocess values."""

    def __init__(self) -> None:
        from prometheus_client import Counter, ProcessCollector

        self.collector = ProcessCollector(registry=None)
        self.gauges: dict[str, Any] = {}
        self.cpu = Counter("process_cpu_seconds", "Total user and system CPU time spent in seconds, summed over "
                           "every worker (replaced ones too)", registry=None)
        self.cpu_published = 0.0

    def publish(self) -> None:
        from prometheus_client import Gauge

        for family in self.collector.collect():
            if not family.samples:
                continue
            value = family.samples[0].value
            if family.type == "counter":  # process_cpu_seconds: add what this worker used since last time
                if value > self.cpu_published:
                    self.cpu.inc(value - self.cpu_published)
                    self.cpu_published = value
                continue
            gauge = self.gauges.get(family.name)
            if gauge is None:
                gauge = self.gauges[family.name] = Gauge(family.name, family.documentation + " (per worker)",
                                                         multiprocess_mode="liveall", registry=None)
            gauge.set(value)


class Units:
    """A registry view that gives ``*_seconds`` and ``*_bytes`` families their OpenMetrics ``# UNIT``.

    Neither prometheus_client's process collector nor its multiprocess collector sets units; the
    OpenMetrics encoder writes ``# UNIT`` for a family that has one (the text format ignores it).
    """

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Any:
        for family in self.registry.collect():
            if not family.unit:
                for unit in ("seconds", "bytes"):
                    if family.name.endswith("_" + unit):
                        family.unit = unit
            yield family


class StatsShare:
    """The console's live statistics across ``--workers``: each worker writes its slots to a file.

    Every ``REFRESH`` seconds a worker replaces ``console-<pid>.json`` in the multiprocess folder
    (written to a temporary name, then renamed, so a reader never sees half a file); the worker
    answering ``/console/stats.json`` merges the others' files into its own live figures.  Files of
    dead workers stay: their calls did happen, and their slots age out of the window.
    """

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.folder = os.environ[ENV]
        self.path = os.path.join(self.folder, f"console-{os.getpid()}.json")
        every_refresh(self.publish)

    def publish(self) -> None:
        temp = self.path + ".tmp"
        try:
            with open(temp, "wb") as out:
                out.write(msgspec.json.encode(self.stats.export()))
            os.replace(temp, self.path)
        except OSError:  # the folder went away (supervisor exiting): nothing to share any more
            pass

    def others(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        try:
            names = os.listdir(self.folder)
        except OSError:
            return found
        for name in names:
            path = os.path.join(self.folder, name)
            if not (name.startswith("console-") and name.endswith(".json")) or path == self.path:
                continue
            try:
                with open(path, "rb") as src:
                    found.append(msgspec.json.decode(src.read()))
            except (OSError, msgspec.DecodeError):
                continue  # a worker being replaced right now: its next file will do
        return found
