"""``async def`` functions see the asyncio semantics of a task of their own (docs/performance.md,
"async functions"): ``asyncio.current_task()`` is one task per call, the same across awaits;
``contextvars`` are per call; ``asyncio.timeout`` and ``TaskGroup`` behave as in any task; a task
that cancels itself gets the cancellation at its next await.  The runner steps a coroutine once
itself before resuming it in the call's task: these tests fail if that ever changes what user code
observes.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import APPS, Server, legacy_frame, recv_all, recv_line
from probes import parse_legacy, request

pytestmark = pytest.mark.timeout(60)
APP = APPS / "asyncsem"


def call(sock: socket.socket, method: str, params: Any = None) -> Any:
    sock.sendall(request(method, params))
    reply = json.loads(recv_line(sock, 10))
    assert "result" in reply, reply
    return reply["result"]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(APP) as s:
        yield s


def test_current_task_is_one_task_per_call_across_awaits(server: Server) -> None:
    burst = b"".join(request("sem.same_task_across_awaits", [f"t{i}"], rid=i) for i in range(8))
    with server.connect() as sock:
        sock.sendall(burst)  # eight calls running at once on one connection
        replies = [json.loads(recv_line(sock, 10)) for _ in range(8)]
    for reply in replies:
        assert reply["result"]["same"] and reply["result"]["is_task"] and reply["result"]["running"], reply
    assert replies[-1]["result"]["distinct"] or any(r["result"]["distinct"] for r in replies)
    with server.connect() as sock:
        assert call(sock, "sem.same_task_across_awaits", ["last"])["distinct"] is True


def test_a_call_that_never_waits_still_has_its_own_running_task(server: Server) -> None:
    with server.connect() as sock:
        seen = call(sock, "sem.task_without_await")
    assert seen == {"is_task": True, "done": False, "in_all_tasks": True, "name": "sem.task_without_await"}


def test_a_task_factory_set_on_the_loop_makes_the_call_tasks(server: Server) -> None:
    """ppy names its call tasks as it makes them, past ``loop.create_task``; a factory the app installs
    on the loop must still be used for them."""
    with server.connect() as sock:
        before = call(sock, "sem.factory_count")
        assert call(sock, "sem.use_task_factory", [True]) is True
        try:
            seen = call(sock, "sem.task_without_await")
            made = call(sock, "sem.factory_count") - before
        finally:
            call(sock, "sem.use_task_factory", [False])
        assert made >= 2  # the call to task_without_await and the one to factory_count each got a task
        assert seen["is_task"] and seen["name"] == "sem.task_without_await", seen
        after = call(sock, "sem.factory_count")
        assert call(sock, "sem.factory_count") == after  # removed again: ppy makes its tasks itself


def test_context_variables_are_per_call(server: Server) -> None:
    burst = b"".join(request("sem.context_isolated", [f"v{i}"], rid=i) for i in range(6))
    with server.connect() as sock:
        sock.sendall(burst)
        replies = {r["id"]: r["result"] for r in (json.loads(recv_line(sock, 10)) for _ in range(6))}
    for i, seen in replies.items():
        assert seen == {"before": "unset", "after": f"v{i}"}, (i, seen)


def test_asyncio_timeout_in_user_code(server: Server) -> None:
    with server.connect() as sock:
        assert call(sock, "sem.own_timeout_expires") == "caught"
        assert call(sock, "sem.own_timeout_not_reached") == "done"
        assert call(sock, "sem.retries_with_own_timeouts") == 3  # expiries it caught are its own
        assert call(sock, "rpc.ping") == "pong"


def test_task_group_in_user_code(server: Server) -> None:
    with server.connect() as sock:
        assert call(sock, "sem.task_group_results") == [0, 10, 20]
        assert call(sock, "sem.task_group_failure") == "ValueError from the group"


def test_a_task_that_cancels_itself(server: Server) -> None:
    with server.connect() as sock:
        assert call(sock, "sem.cancel_self_then_catch") == "cancelled at the await"
        assert call(sock, "rpc.ping") == "pong"  # the server and the connection are fine


def test_the_drain_cuts_off_a_coroutine_that_swallows_its_cancellation() -> None:
    """Unlike a TaskGroup's own cancellation, the drain's is not the function's to swallow: a call that
    catches it and waits again is abandoned and still answered.  --timeout 4: the drain waits 6 s;
    a legacy frame completed 5.5 s in starts a call whose own deadline (9.5 s) is after the cut (6 s)
    plus the seconds the drain then gives cut-off calls and connections to answer (8 s)."""
    srv = Server(APP, "--timeout", "4", "--request-timeout", "20")
    try:
        with srv.connect(15) as sock:
            frame = legacy_frame(json.dumps({"entry": "sem", "func": "stubborn", "param": [30]}).encode())
            sock.sendall(frame[:5])
            time.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(5.3)
            sock.sendall(frame[5:])
            reply = parse_legacy(recv_all(sock, 10))
        assert reply["data"] == [] and "shutting down" in reply["error"], reply
        assert srv.proc.wait(10) == 0
        assert "abandoned" in srv.output()
    finally:
        srv.stop(signal.SIGKILL)
