"""Call tasks and the drain: an ``async def`` call's task is in ``state.tasks`` (what the drain waits
for) while it runs, and takes itself out as it ends, with no done callback per call."""

from __future__ import annotations

import asyncio

import pytest

from conftest import APPS
from harness import Pipe, request, serve_in_memory, until

APP = APPS / "hostile"
pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def test_an_async_call_task_leaves_the_drain_set_as_it_ends_whatever_it_did() -> None:
    """Call tasks take themselves out of ``state.tasks`` (no done callback): after results, errors and a
    call that awaited, nothing is left for the drain to wait for; while one runs, it is there."""
    async def main() -> None:
        state = serve_in_memory(APP)
        pipe = Pipe(state)
        pipe.send(request("h.nap", [0.05], rid=1))
        await asyncio.sleep(0)
        assert len(state.tasks) == 1  # running: the drain waits for it
        pipe.send(b"".join(request(m, rid=i) for i, m in enumerate(["h.aodd", "h.aunprintable", "h.aown_timeout"])))
        replies: list[dict[str, object]] = []
        await until(lambda: len(replies.extend(pipe.replies()) or replies) == 4)
        assert sorted(r["id"] for r in replies) == [0, 1, 1, 2]  # h.nap answered as id 1 too
        await asyncio.sleep(0)  # each task's last step has run
        assert not state.tasks and not state.dispatcher.inflight

    asyncio.run(main())
