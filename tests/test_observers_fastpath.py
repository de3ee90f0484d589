"""The cheap hot-path variants must say exactly what the slow, obvious ones say.

* ``Metrics`` counts into plain ints and builds the families at scrape time:
  its exposition must equal prometheus_client's own Counter/Histogram fed the same calls.
* ``jsonrpc.parse`` decodes well-formed requests straight into a msgspec Struct:
  on random request-like documents it must give the verdict of ``request_from_obj``.
"""

from __future__ import annotations

import json
import random
import types
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ppy.server.observe.metrics import BUCKETS, Metrics
from ppy.wire import jsonrpc, jsonvalue

CALLS = [("h.hello", "lines", 0, 0.0001), ("h.hello", "lines", 0, 0.00030), ("h.hello", "http", -32602, 100.0),
         ("nope.x", "lines", -32601, 0.002), ("other.y", "lines", -32601, 0.5), ("rpc.ping", "legacy", 0, 60.0),
         ("h.hello", "lines", -32001, 30.0)]


def _exposition(text: bytes) -> list[str]:
    return sorted(line for line in text.decode().splitlines()
                  if line.startswith(("ppy_calls_total", "ppy_call_duration_seconds_")) and "_created" not in line)


def test_plain_counts_render_like_prometheus_client() -> None:
    dispatcher = types.SimpleNamespace(registry=types.SimpleNamespace(functions={"h.hello": None}),
                                       runner=types.SimpleNamespace(respawn_observers=[], isolated=False),
                                       observers=[], inflight=0)
    metrics = Metrics(types.SimpleNamespace(dispatcher=dispatcher, by_dialect=Tally(), refused=0))  # type: ignore[arg-type]
    reference = CollectorRegistry()
    calls = Counter("ppy_calls", "c", ["method", "dialect", "outcome"], registry=reference)
    latency = Histogram("ppy_call_duration_seconds", "l", ["method"], buckets=BUCKETS, registry=reference)
    outcomes = {0: "ok", -32602: "invalid_params", -32601: "method_not_found", -32001: "timeout"}
    for turn in (CALLS[:2], CALLS[2:]):  # the dispatcher hands over the calls of one loop turn at a time
        grouped: dict[tuple[str, str, int], list[float]] = {}
        for method, dialect, code, seconds in turn:
            grouped.setdefault((method, dialect, code), []).append(seconds)
        metrics.observer(grouped)
    for method, dialect, code, seconds in CALLS:
        label = method if method in ("h.hello", "rpc.ping") else "(other)"
        calls.labels(label, dialect, outcomes[code]).inc()
        latency.labels(label).observe(seconds)
    ours, _ = metrics.render(None)
    assert _exposition(ours) == _exposition(generate_latest(reference))
    assert 'ppy_limit_trips_total{limit="timeout"} 1.0' in ours.decode()
    assert len(metrics._rows) == 4  # invented method names never become cache keys


def _request_like(rng: random.Random) -> Any:
    values: list[Any] = [None, True, False, 0, 1, -1, 1.5, 0.0, -2.0, "", "2.0", "2", "h.hello", [], [1], {},
                         {"a": 1}, 10**30, "x"]
    obj: dict[str, Any] = {}
    for key in ("jsonrpc", "method", "params", "id", "timeout", "extra"):
        r = rng.random()
        if r < 0.25:
            continue
        if key == "jsonrpc" and r < 0.8:
            obj[key] = "2.0"
        elif key == "method" and r < 0.7:
            obj[key] = "h.hello"
        else:
            obj[key] = rng.choice(values)
    return obj


def _slow(line: bytes) -> tuple[list[jsonrpc.Item], bool]:
    try:
        doc = jsonvalue.decode(line, 64)
    except Exception as exc:  # compared as a rejection below
        return [jsonrpc.Rejected(None, exc)], False  # type: ignore[arg-type]
    if isinstance(doc, list):
        return [jsonrpc.request_from_obj(obj) for obj in doc], True
    return [jsonrpc.request_from_obj(doc)], False


def _seconds(timeout: Any) -> float | None:
    """The struct reads a timeout as a float (10**30 -> 1e30); the deadline is the same."""
    return None if timeout is None else float(timeout)


def _verdict(parsed: tuple[list[jsonrpc.Item], bool]) -> Any:
    items, batch = parsed
    return batch, [(type(i).__name__, repr(i.id), getattr(i, "method", None), repr(getattr(i, "params", None)),
                    getattr(i, "notify", None), _seconds(getattr(i, "timeout", None)),
                    _error(i, "code"), _error(i, "message"))
                   for i in items]


def _error(item: jsonrpc.Item, field: str) -> Any:
    return getattr(getattr(item, "error", None), field, None)


def test_struct_fast_path_agrees_with_the_validating_path() -> None:
    rng = random.Random(6)
    fast_hits = 0
    for _ in range(3000):
        doc = ([_request_like(rng) for _ in range(rng.randint(1, 4))] if rng.random() < 0.2
               else _request_like(rng))
        line = json.dumps(doc).encode()
        got = jsonrpc.parse(line)
        assert _verdict(got) == _verdict(_slow(line)), line
        fast_hits += all(isinstance(i, jsonrpc.Call) for i in got[0])
    assert fast_hits > 50  # the generator does produce valid requests (the fast path's only input)
