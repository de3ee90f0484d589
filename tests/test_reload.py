"""``--reload``: edits take effect for the next call, calls in flight finish on the old code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ppy
from conftest import Server
from probes import wait_inflight

pytestmark = pytest.mark.timeout(90)

MOD = '''
import os
import time

import helper


def value() -> str:
    return "{value}"


def slow(ms: int = 1200) -> str:
    """Sleeps, then answers with *its own* module's value(): old code must stay old."""
    time.sleep(ms / 1000)
    return value()


def sibling() -> str:
    return helper.NAME


def pid() -> int:
    return os.getpid()
'''


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie's cmdline is empty)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except OSError:
        return False


def write_mod(app: Path, value: str) -> None:
    (app / "mod.py").write_text(MOD.format(value=value))


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    write_mod(folder, "one")
    (folder / "helper.py").write_text('NAME = "first"\n')
    return folder


def eventually(fn: Callable[[], Any], want: Callable[[Any], bool], timeout: float = 15.0) -> Any:
    """Call ``fn`` until its result satisfies ``want`` (the watcher needs a moment to see a change)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except ppy.RemoteError as exc:
            last = exc
        if want(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"still {last!r} after {timeout} s")


def slow_call_across_an_edit(server: Server, app: Path, new_value: str) -> tuple[str, str]:
    async def scenario() -> tuple[str, str]:
        async with ppy.AsyncClient(server.url, timeout=20) as client:
            slow = asyncio.ensure_future(client.call("mod.slow", 1500))
            await asyncio.to_thread(wait_inflight, server, 1)  # the slow call is running on the old code
            write_mod(app, new_value)
            deadline = time.monotonic() + 15
            while (now := await client.call("mod.value")) != new_value and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return await slow, now

    return asyncio.run(scenario())


@pytest.fixture()
def server(app: Path) -> Iterator[Server]:
    srv = Server(app, "--reload", "--timeout", "10", http=True)
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_path.read_text()


def test_edit_during_a_slow_call(server: Server, app: Path) -> None:
    old, new = slow_call_across_an_edit(server, app, "two")
    assert new == "two"
    assert old == "one", "the call in flight must finish on the code it started with"
    with ppy.Client(server.url) as client:
        assert client.call("mod.slow", 10) == "two"  # new calls run the new code throughout
    assert "reload: mod.py changed" in server.output()


def test_syntax_error_is_reported_and_the_old_version_keeps_serving(server: Server, app: Path) -> None:
    client = ppy.Client(server.url)
    try:
        (app / "mod.py").write_text("def value(:\n    return 'broken'\n")
        eventually(server.output, lambda out: "still serving its previous version" in out)
        report = next(line for line in server.output().splitlines() if "reload: entry 'mod' failed to import" in line)
        assert "SyntaxError" in report and "mod.py, line 1" in report
        doc = client.call("rpc.discover")
        assert "x-import-errors" not in doc  # failures are the log's, never the listing's
        assert client.call("mod.value") == "one"  # the previous good version still answers
        assert "mod.value" in {m["name"] for m in doc["methods"]}
        assert "still serving its previous version" in server.output()
        write_mod(app, "three")
        eventually(lambda: client.call("mod.value"), lambda v: v == "three")
        assert "x-import-errors" not in client.call("rpc.discover")
    finally:
        client.close()


def test_sibling_imports_are_not_served_stale(server: Server, app: Path) -> None:
    with ppy.Client(server.url) as client:
        assert client.call("mod.sibling") == "first"
        (app / "helper.py").write_text('NAME = "second, longer"\n')
        eventually(lambda: client.call("mod.sibling"), lambda v: v == "second, longer")
        (app / "extra.py").write_text("def hi() -> str:\n    return 'new file'\n")
        eventually(lambda: client.call("extra.hi"), lambda v: v == "new file")


def test_reload_restarts_isolated_workers(app: Path) -> None:
    with Server(app, "--reload", "--isolate", "--pool-size", "2", "--timeout", "10", http=True) as server:
        with ppy.Client(server.url) as client:
            before = {client.call("mod.pid") for _ in range(6)}
        old, new = slow_call_across_an_edit(server, app, "two")
        assert (old, new) == ("one", "two")
        with ppy.Client(server.url) as client:
            after = {client.call("mod.pid") for _ in range(6)}
        assert not before & after, "every worker must be replaced to run the new code"
        # retired workers exit on their own once their channel closes
        eventually(lambda: [pid for pid in before if running(pid)], lambda alive: not alive, timeout=10)
