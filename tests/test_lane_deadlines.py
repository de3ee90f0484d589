"""The lane enforces sync calls' deadlines with one timer per batch (ppy.run.lane.Deadlines)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ppy.run.lane import Expired, SyncLane


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@pytest.mark.timeout(20)
def test_a_call_past_its_deadline_expires_and_its_batch_mates_do_not() -> None:
    async def main() -> None:
        pool = ThreadPoolExecutor(4)
        lane = SyncLane(pool, cpu_slots=2)
        try:
            slow = lane.submit(_sleep, (0.5,), timeout=0.1)  # one loop turn: one batch, one timer
            fast = [lane.submit(_sleep, (0,), timeout=5.0) for _ in range(5)]
            started = time.monotonic()
            with pytest.raises(Expired):
                await slow
            assert time.monotonic() - started < 0.4  # the deadline, not the call's end
            assert await asyncio.gather(*fast) == ["slept"] * 5  # moved off the batch by the watchdog
            # The slow call ends and is delivered (the pool's threads are done; the loop callbacks they
            # scheduled run before this coroutine resumes): the batch's timer goes.
            await asyncio.to_thread(pool.shutdown, True)
            assert lane._deadlines.left == 0 and lane._deadlines.timer is None
        finally:
            pool.shutdown(wait=True)

    asyncio.run(main())


@pytest.mark.timeout(20)
def test_the_batch_timer_is_cancelled_when_its_last_call_is_delivered() -> None:
    async def main() -> None:
        pool = ThreadPoolExecutor(2)
        lane = SyncLane(pool, cpu_slots=2)
        try:
            futures = [lane.submit(_sleep, (0,), timeout=30.0) for _ in range(10)]
            await asyncio.sleep(0)  # the lane submits the batch and arms its one timer
            deadlines = lane._deadlines
            timer = deadlines.timer
            assert timer is not None and deadlines.left == 10
            assert await asyncio.gather(*futures) == ["slept"] * 10
            assert deadlines.left == 0 and deadlines.timer is None and timer.cancelled()
            late = lane.submit(_sleep, (0,), timeout=None)  # no deadline: no timer at all
            await asyncio.sleep(0)
            assert lane._deadlines.timer is None
            assert await late == "slept"
        finally:
            pool.shutdown(wait=True)

    asyncio.run(main())
