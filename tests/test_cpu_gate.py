"""CPU-bound sync functions queue for a few CPU slots; functions that wait get a thread per call.

With one GIL, many threads computing at once finish no sooner than two, and their GIL
hand-overs cost the whole process (docs/performance.md, target 7).  The server tells the two
kinds apart by the CPU time of each slow call's thread against its wall time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import ppy
from conftest import APPS, Server
from ppy.run.lane import Expired, SyncLane
from ppy.run.threads import CPU_SLOTS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(APPS / "gate")
    yield srv
    assert srv.stop() == 0, srv.output()


def _together(server: Server, method: str, arg: int, n: int) -> list[object]:
    """``n`` calls at once, each on its own connection."""
    def one(_: int) -> object:
        with ppy.Client(server.url, timeout=30) as client:
            return client.call(method, arg)
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_cpu_bound_calls_run_at_most_cpu_slots_at_once(server: Server) -> None:
    _together(server, "g.crunch", 20, 1)  # measured once: CPU-bound
    with ppy.Client(server.url) as client:
        client.call("g.peak")
    results = _together(server, "g.crunch", 50, 8)
    assert all(isinstance(n, int) and n > 0 for n in results)
    with ppy.Client(server.url) as client:
        assert 1 <= client.call("g.peak") <= CPU_SLOTS


def test_calls_that_wait_are_not_held_to_the_cpu_slots(server: Server) -> None:
    _together(server, "g.wait", 50, 1)  # measured once: it waits
    with ppy.Client(server.url) as client:
        client.call("g.peak")
    assert _together(server, "g.wait", 300, 8) == [300] * 8
    with ppy.Client(server.url) as client:
        assert client.call("g.peak") == 8  # all eight slept side by side


def test_a_function_that_turns_from_waiting_to_computing_is_gated_again(server: Server) -> None:
    # A fresh function per test would need a fresh app; the same function measured after a slow
    # computing call moves back to the slots (each slow call re-measures).
    _together(server, "g.wait", 50, 1)
    _together(server, "g.crunch", 20, 1)
    with ppy.Client(server.url) as client:
        client.call("g.peak")
    _together(server, "g.crunch", 50, 6)
    with ppy.Client(server.url) as client:
        assert client.call("g.peak") <= CPU_SLOTS
        assert client.call("g.wait", 1) == 1  # and the server still answers


def _record(order: list[int], i: int, seconds: float) -> int:
    order.append(i)
    time.sleep(seconds)
    return i


def test_the_gate_keeps_arrival_order_and_skips_calls_whose_deadline_passed_while_queued() -> None:
    async def main() -> None:
        pool = ThreadPoolExecutor(8)
        lane = SyncLane(pool, cpu_slots=1)
        order: list[int] = []
        try:
            first = lane.submit(_record, (order, 0, 0.3), alone=True, cpu_bound=True, timeout=5)
            late = lane.submit(_record, (order, 1, 0), alone=True, cpu_bound=True, timeout=0.1)
            rest = [lane.submit(_record, (order, i, 0), alone=True, cpu_bound=True, timeout=5) for i in (2, 3, 4)]
            free = lane.submit(_record, (order, 9, 0), alone=True, cpu_bound=False, timeout=5)
            assert await free == 9  # not gated: it ran while the slot was taken
            with pytest.raises(Expired):
                await late
            assert await first == 0 and await asyncio.gather(*rest) == [2, 3, 4]
            assert order == [0, 9, 2, 3, 4]  # 1 expired in the queue and never ran; the rest in order
            await _at_rest(lane, 1)  # a thread hands its slot back just after delivering its result
        finally:
            pool.shutdown(wait=True)

    asyncio.run(main())


def test_a_call_that_raises_gives_its_slot_back() -> None:
    def boom() -> None:
        raise SystemExit(3)

    async def main() -> None:
        pool = ThreadPoolExecutor(2)
        lane = SyncLane(pool, cpu_slots=1)
        try:
            with pytest.raises(SystemExit):
                await lane.submit(boom, (), alone=True, cpu_bound=True, timeout=5)
            assert await lane.submit(threading.get_ident, (), alone=True, cpu_bound=True, timeout=5)
            await _at_rest(lane, 1)
        finally:
            pool.shutdown(wait=True)

    asyncio.run(main())


def test_a_call_past_its_deadline_gives_its_slot_to_the_next_call_once() -> None:
    # A function computing forever must not hold a CPU slot forever: past its deadline the client
    # has its -32001 and the slot passes on, while the abandoned call keeps its thread until it ends.
    ended = threading.Event()

    def stuck() -> None:
        time.sleep(0.8)
        ended.set()

    async def main() -> None:
        pool = ThreadPoolExecutor(4)
        lane = SyncLane(pool, cpu_slots=1)
        try:
            hung = lane.submit(stuck, (), alone=True, cpu_bound=True, timeout=0.1)
            nxt = lane.submit(threading.get_ident, (), alone=True, cpu_bound=True, timeout=5)
            with pytest.raises(Expired):
                await hung
            assert await nxt and not ended.is_set()  # served while the abandoned call still runs
            # The pool's threads are done (the abandoned call returned and handed its slot back): the
            # loop callbacks they scheduled run before this coroutine resumes.
            await asyncio.to_thread(pool.shutdown, True)
            assert ended.is_set() and lane._gate_free == 1  # its return did not free a second slot
        finally:
            pool.shutdown(wait=True)

    asyncio.run(main())


def test_a_running_gated_call_past_its_deadline_reports_itself_and_a_queued_one_does_not() -> None:
    abandoned: list[str] = []

    async def main() -> None:
        pool = ThreadPoolExecutor(4)
        lane = SyncLane(pool, cpu_slots=1)
        try:
            running = lane.submit(time.sleep, (0.5,), alone=True, cpu_bound=True, timeout=0.1,
                                  on_abandon=lambda: abandoned.append("running"))
            queued = lane.submit(time.sleep, (0,), alone=True, cpu_bound=True, timeout=0.05,
                                 on_abandon=lambda: abandoned.append("queued"))
            for fut in (running, queued):
                with pytest.raises(Expired):
                    await fut
            await asyncio.to_thread(pool.shutdown, True)  # the running call ended; nothing more to report
        finally:
            pool.shutdown(wait=True)

    asyncio.run(main())
    assert abandoned == ["running"]


def test_a_function_stuck_past_its_deadline_gets_threads_again() -> None:
    # A database that went away: calls of a waiting function hang.  Once one holding a CPU slot is
    # abandoned, its calls get threads again, so they cannot hold the slots a deadline each.
    srv = Server(APPS / "gate", "--timeout", "1")
    try:
        with pytest.raises(ppy.RemoteError) as first:
            _together(srv, "g.wait", 2500, 1)  # its first call: not measured yet, runs ungated, expires
        assert first.value.code == -32001
        with pytest.raises(ppy.RemoteError) as gated:
            _together(srv, "g.wait", 2500, 2)  # meanwhile taken as CPU-bound: these hold the slots, expire
        assert gated.value.code == -32001
        with ppy.Client(srv.url) as client:
            client.call("g.peak")
        assert _together(srv, "g.wait", 300, 8) == [300] * 8
        with ppy.Client(srv.url) as client:
            assert client.call("g.peak") >= 8  # all eight at once (plus the stuck ones still sleeping)
    finally:
        assert srv.stop() == 0, srv.output()


def test_the_first_burst_of_an_unclassified_function_that_waits_runs_side_by_side(server: Server) -> None:
    with ppy.Client(server.url) as client:
        client.call("g.peak")
    assert _together(server, "g.wait_fresh", 500, 8) == [500] * 8
    with ppy.Client(server.url) as client:
        assert client.call("g.peak") == 8  # not two at a time while the function was unclassified


def test_the_first_burst_of_an_unclassified_function_that_computes_goes_to_the_slots(server: Server) -> None:
    with ppy.Client(server.url) as client:
        client.call("g.peak")
    results = _together(server, "g.crunch_fresh", 100, 8)
    assert all(isinstance(n, int) and n > 0 for n in results)
    with ppy.Client(server.url) as client:
        assert 1 <= client.call("g.peak") <= CPU_SLOTS + 1  # the first call ran ungated while it was measured


async def _at_rest(lane: SyncLane, slots: int) -> None:
    """Wait (bounded) until the pool threads handed their slots back: that follows each result's delivery."""
    deadline = time.monotonic() + 5
    while lane._gate_free != slots and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert lane._gate_free == slots and not lane._gate_queue and not lane._gate_running


def test_a_call_never_queues_behind_another_functions_calls() -> None:
    release = threading.Event()

    def long(i: int) -> int:
        release.wait(10)
        return i

    async def main() -> None:
        pool = ThreadPoolExecutor(8)
        lane = SyncLane(pool, cpu_slots=1)
        order: list[int] = []
        try:
            a1 = lane.submit(long, (1,), alone=True, cpu_bound=True, timeout=20, key="a")
            a2 = lane.submit(_record, (order, 2, 0), alone=True, cpu_bound=True, timeout=20, key="a")
            b1 = lane.submit(_record, (order, 3, 0), alone=True, cpu_bound=True, timeout=20, key="b")
            assert await b1 == 3  # served while "a" holds the only slot
            assert not a2.done() and order == [3]  # "a"'s second call waits behind its own function only
            release.set()
            assert await a1 == 1 and await a2 == 2
            await _at_rest(lane, 1)
        finally:
            release.set()
            pool.shutdown(wait=True)

    asyncio.run(main())


def test_borrowed_slots_are_given_back_exactly() -> None:
    release = threading.Event()

    def hold() -> int:
        release.wait(10)
        return 0

    async def main() -> None:
        pool = ThreadPoolExecutor(8)
        lane = SyncLane(pool, cpu_slots=1)
        order: list[int] = []
        try:
            held = lane.submit(hold, (), alone=True, cpu_bound=True, timeout=20, key="a")
            b_hold = lane.submit(hold, (), alone=True, cpu_bound=True, timeout=20, key="b")  # borrows a slot
            calls = [lane.submit(_record, (order, i, 0), alone=True, cpu_bound=True, timeout=20, key=k)
                     for i, k in ((1, "a"), (2, "a"), (3, "b"), (4, "b"))]
            await asyncio.sleep(0.05)
            assert order == []
            release.set()
            await asyncio.gather(held, b_hold, *calls)
            assert sorted(order) == [1, 2, 3, 4]
            assert order.index(1) < order.index(2) and order.index(3) < order.index(4)  # each in arrival order
            await _at_rest(lane, 1)
        finally:
            release.set()
            pool.shutdown(wait=True)

    asyncio.run(main())
