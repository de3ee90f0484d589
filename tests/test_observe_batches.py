"""Observers (metrics, the console's statistics) get the calls of one event-loop turn as one batch.

The dispatcher queues each finished call and hands the queue over at the end of the loop turn (or
once it holds OBSERVE_BATCH calls), so a pipelined burst costs one observer call per turn, not one per
call.  What must hold: every answered call is observed exactly once, with its own outcome; a reader
that flushes first sees every call answered so far; an observer that raises never costs a reply.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import APPS
from harness import Pipe, request, serve_in_memory, until
from ppy.app.dispatch import OBSERVE_BATCH, Observations

APP = APPS / "hostile"
pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def test_a_pipelined_burst_reaches_observers_once_per_turn_after_its_replies() -> None:
    async def main() -> None:
        state = serve_in_memory(APP)
        batches: list[Observations] = []
        state.dispatcher.observers.append(batches.append)
        pipe = Pipe(state)
        burst = [request("rpc.ping", rid=i) for i in range(10)] + [request("no.such", rid=10)]
        pipe.send(b"".join(burst))
        assert len(pipe.replies()) == 11  # answered in this turn ...
        assert batches == []  # ... observed at its end
        await asyncio.sleep(0)
        assert len(batches) == 1  # grouped by method, dialect and outcome
        assert {key: len(times) for key, times in batches[0].items()} == {
            ("rpc.ping", "lines", 0): 10, ("no.such", "lines", -32601): 1}
        assert all(seconds >= 0 for times in batches[0].values() for seconds in times)

    asyncio.run(main())


def test_a_reader_that_flushes_sees_every_call_answered_so_far() -> None:
    async def main() -> None:
        state = serve_in_memory(APP)
        seen: list[str] = []
        state.dispatcher.observers.append(lambda batch: seen.extend(m for (m, _, _), t in batch.items() for _ in t))
        pipe = Pipe(state)
        pipe.send(request("rpc.ping"))
        state.dispatcher.flush_observations()  # what /metrics and /console/stats.json do first
        assert seen == ["rpc.ping"]
        await asyncio.sleep(0)  # the turn's own flush finds nothing left: no call is counted twice
        assert seen == ["rpc.ping"]

    asyncio.run(main())


def test_the_queue_is_bounded_within_one_turn() -> None:
    async def main() -> None:
        state = serve_in_memory(APP, max_batch=OBSERVE_BATCH + 10)
        sizes: list[int] = []
        state.dispatcher.observers.append(lambda batch: sizes.append(sum(map(len, batch.values()))))
        pipe = Pipe(state)
        n = OBSERVE_BATCH + 10
        pipe.send(json.dumps([{"jsonrpc": "2.0", "method": "rpc.ping", "id": i} for i in range(n)]).encode() + b"\n")
        await until(lambda: sum(sizes) == n)
        assert max(sizes) == OBSERVE_BATCH

    asyncio.run(main())


def test_an_observer_that_raises_costs_no_reply_and_not_the_other_observers(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        state = serve_in_memory(APP)
        seen: list[float] = []

        def broken(batch: Observations) -> None:
            raise RuntimeError("observer bug")

        state.dispatcher.observers += [broken, lambda batch: seen.extend(t for ts in batch.values() for t in ts)]
        pipe = Pipe(state)
        for i in range(3):
            pipe.send(request("rpc.ping", rid=i))
            await asyncio.sleep(0)
        assert [r["result"] for r in pipe.replies()] == ["pong"] * 3
        assert len(seen) == 3

    asyncio.run(main())
    assert "internal error in a call observer" in caplog.text

