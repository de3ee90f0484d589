"""The two ways an ``async def`` call runs give the same answers: alone, its task runs the thread
runner's settling coroutine (``ThreadRunner.run_settled``); inside a batch, the batch's task awaits
``ThreadRunner.run``, which drives the same coroutine.  And ``jsonrpc.parse_line``, the lines hot
path's decoder, agrees with ``jsonrpc.parse`` on every kind of line."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from conftest import APPS
from harness import Pipe, request, serve_in_memory, until
from ppy.wire import jsonrpc
from ppy.wire.model import Call

APP = APPS / "hostile"
pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

#: (method, params, extra request members): a result, errors raised before and after waiting,
#: the function's own TimeoutError (-32000), and ppy's deadline (-32001).
CASES: list[tuple[str, list[Any], dict[str, Any]]] = [
    ("h.nap", [0.0], {}),
    ("h.aodd", [], {}),
    ("h.aunprintable", [], {}),
    ("h.aown_timeout", [], {}),
    ("h.nap", [5.0], {"timeout": 0.05}),
]


def _line(method: str, params: list[Any], extra: dict[str, Any], rid: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": rid, **extra}


def _shape(reply: dict[str, Any]) -> Any:
    """What must agree: the result, or the error's code, message and type (not the request_id)."""
    if "result" in reply:
        return ("result", reply["result"])
    error = reply["error"]
    message = re.sub(r" at 0x[0-9a-f]+", "", error["message"])  # an unprintable exception's address
    return ("error", error["code"], message, error.get("data", {}).get("type"))


def test_an_async_call_answers_the_same_alone_and_in_a_batch() -> None:
    async def main() -> None:
        state = serve_in_memory(APP)
        pipe = Pipe(state)
        for rid, (method, params, extra) in enumerate(CASES):
            pipe.send(json.dumps(_line(method, params, extra, rid)).encode() + b"\n")
        replies: list[dict[str, Any]] = []
        await until(lambda: len(replies.extend(pipe.replies()) or replies) == len(CASES))
        alone = {r["id"]: _shape(r) for r in replies}
        batch = [_line(method, params, extra, rid) for rid, (method, params, extra) in enumerate(CASES)]
        pipe.send(json.dumps(batch).encode() + b"\n")
        answers: list[Any] = []
        await until(lambda: len(answers.extend(pipe.replies()) or answers) == 1)
        batched = {r["id"]: _shape(r) for r in answers[0]}
        assert batched == alone
        assert alone[0] == ("result", 0.0)
        assert alone[3] == ("error", -32000, "database did not answer in 2 s", "TimeoutError")
        assert alone[4][:2] == ("error", -32001)
        await asyncio.sleep(0)  # each task's last step has run
        assert not state.tasks and not state.dispatcher.inflight  # every slot given back, no task left

    asyncio.run(main())


def test_an_async_call_cut_off_by_the_drain_still_answers_once_and_gives_its_slot_back() -> None:
    """Cancelling the call's task (what the drain deadline does) settles it with -32001 from inside
    the runner's coroutine: one reply, no slot kept, the task gone from the drain's set."""
    async def main() -> None:
        state = serve_in_memory(APP)
        pipe = Pipe(state)
        pipe.send(request("h.nap", [5.0], rid=7))
        await until(lambda: bool(state.tasks))
        await asyncio.sleep(0.01)  # the coroutine is waiting inside its deadline
        for task in list(state.tasks):
            task.cancel()
        replies: list[dict[str, Any]] = []
        await until(lambda: len(replies.extend(pipe.replies()) or replies) == 1)
        assert replies[0]["id"] == 7 and replies[0]["error"]["code"] == -32001
        await asyncio.sleep(0)
        assert not state.tasks and not state.dispatcher.inflight

    asyncio.run(main())


LINES = [
    b'{"jsonrpc":"2.0","method":"h.hello","params":[],"id":1}',
    b'{"jsonrpc":"2.0","method":"h.hello","params":{"a":[1,{"b":2}]},"id":"x","timeout":2}',
    b'{"jsonrpc":"2.0","method":"h.hello"}',  # a notification
    b'[{"jsonrpc":"2.0","method":"h.hello","id":1},{"jsonrpc":"2.0","method":"h.hi"}]',
    b'[]',
    b'{"jsonrpc":"2.0","method":"","id":1}',
    b'{"jsonrpc":"1.0","method":"h.hello","id":1}',
    b'{"jsonrpc":"2.0","method":"h.hello","params":[[[[[[1]]]]]],"id":1}',  # deeper than max_depth=4
    b'not json',
    b'"a string"',
]


@pytest.mark.parametrize("line", LINES)
def test_parse_line_agrees_with_parse(line: bytes) -> None:
    parsed = jsonrpc.parse_line(line, 4, 100)
    whole = jsonrpc.parse(line, max_depth=4, max_batch=100)
    if isinstance(parsed, Call):
        assert whole == ([parsed], False)  # only a single well-formed request comes back unwrapped
    else:
        assert parsed[1] == whole[1]
        assert [repr(item) for item in parsed[0]] == [repr(item) for item in whole[0]]
        assert parsed[1] or not isinstance(parsed[0][0], Call)
