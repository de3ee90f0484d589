"""ppy.run.pool.Threads: the call threads that replaced ThreadPoolExecutor (no future per job)."""

from __future__ import annotations

import os
import threading

import pytest

from ppy.run.pool import BATCH, Threads


def _wait(cond: threading.Condition, pred: object, timeout: float = 5.0) -> None:
    with cond:
        assert cond.wait_for(pred, timeout), "timed out"  # type: ignore[arg-type]


def test_jobs_run_side_by_side_up_to_the_bound_and_no_further() -> None:
    pool = Threads(3)
    cond = threading.Condition()
    running: list[int] = []
    release = threading.Event()
    done: list[int] = []

    def job(i: int) -> None:
        with cond:
            running.append(i)
            cond.notify_all()
        release.wait(5)
        with cond:
            done.append(i)
            cond.notify_all()

    for i in range(5):
        pool.submit(job, i)
    _wait(cond, lambda: len(running) == 3)  # three threads, each blocked in a job
    assert pool.size == 3
    release.set()
    _wait(cond, lambda: len(done) == 5)  # the two queued jobs ran once threads were free
    assert sorted(done) == list(range(5))
    assert pool.size == 3
    pool.close()


def test_idle_threads_are_reused_not_multiplied() -> None:
    pool = Threads(8)
    cond = threading.Condition()
    done: list[int] = []

    def job(i: int) -> None:
        with cond:
            done.append(i)
            cond.notify_all()

    for i in range(50):
        pool.submit(job, i)
        _wait(cond, lambda i=i: len(done) == i + 1)  # one job at a time: one thread does them all
    assert pool.size == 1
    pool.close()


def test_close_drops_queued_jobs_and_refuses_new_ones() -> None:
    pool = Threads(1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    pool.submit(lambda: (started.set(), release.wait(5), ran.append("first")))
    assert started.wait(5)
    pool.submit(lambda: ran.append("queued"))
    pool.close()
    release.set()
    pool._threads[0].join(5)  # it ends after its job: close() left it a sentinel, not the queued job
    assert ran == ["first"]
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_a_job_that_raises_does_not_kill_its_thread() -> None:
    pool = Threads(1)
    ok = threading.Event()
    pool.submit(lambda: 1 / 0)
    pool.submit(ok.set)
    assert ok.wait(5)
    assert pool.size == 1
    pool.close()


@pytest.mark.skipif(BATCH is None, reason="SCHED_BATCH is Linux only")
def test_call_threads_do_not_preempt_the_event_loop() -> None:
    pool = Threads(1)
    seen: list[int] = []
    ok = threading.Event()
    pool.submit(lambda: (seen.append(os.sched_getscheduler(0)), ok.set()))
    assert ok.wait(5)
    assert seen == [BATCH]
    assert os.sched_getscheduler(0) != BATCH  # the submitting (loop) thread keeps its policy
    pool.close()
