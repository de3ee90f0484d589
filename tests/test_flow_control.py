"""Per-connection flow control, driven in memory (tests/harness.py): the real Connection and
Dispatcher over a fake transport, so every step can be observed without timing assumptions.

- the window (--max-conn-inflight): past it the connection is not read and the requests already
  read wait, as bytes, in the decoder; no request is ever answered -32002 for it;
- output: past the high-water mark of replies waiting, requests are neither read nor handled;
- --send-timeout: replies that make no progress abort the connection;
- wrong tokens: the connection is closed after MAX_WRONG_TOKENS.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import APPS
from harness import Pipe, request, serve_in_memory, until
from ppy.server.tcp.auth import MAX_WRONG_TOKENS
from ppy.server.tcp.bounds import HIGH_WATER
from ppy.server.tcp.phase import Phase

APP = APPS / "hostile"
pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def test_window_pauses_reading_instead_of_refusing() -> None:
    async def main() -> None:
        state = serve_in_memory(APP, max_conn_inflight=4, max_inflight=1000)
        pipe = Pipe(state)
        pipe.send(b"".join(request("h.nap", [0.05], rid=i) for i in range(200)))
        conn = pipe.conn
        assert conn.calls == 4  # the window, not 20
        assert not pipe.transport.reading  # TCP backpressure
        assert conn.held and conn.handler is not None and conn.handler.decoder.pending  # the rest wait as bytes
        replies: list[dict[str, object]] = []

        def collect() -> bool:
            replies.extend(pipe.replies())
            return len(replies) == 200
        await until(collect)
        assert sorted(r["id"] for r in replies) == list(range(200))  # type: ignore[type-var]
        assert all(r.get("result") == 0.05 for r in replies), replies
        assert pipe.transport.reading and conn.calls == 0
        state.dispatcher.runner.close()
    asyncio.run(main())


def test_a_batch_counts_as_its_calls_and_waits_until_it_fits() -> None:
    async def main() -> None:
        state = serve_in_memory(APP, max_conn_inflight=5, max_inflight=1000)
        pipe = Pipe(state)
        batch = [{"jsonrpc": "2.0", "method": "h.nap", "params": [0.05], "id": i} for i in range(4)]
        pipe.send((json.dumps(batch) + "\n").encode() * 2)
        assert pipe.conn.calls == 4  # the second batch would take it to 8 > 5
        got: list[object] = []

        def collect() -> bool:
            got.extend(pipe.replies())
            return len(got) == 2
        await until(collect)
        assert all(isinstance(b, list) and len(b) == 4 for b in got)
        state.dispatcher.runner.close()
    asyncio.run(main())


def test_replies_not_read_stop_reading_and_handling() -> None:
    async def main() -> None:
        state = serve_in_memory(APP)
        pipe = Pipe(state)
        flood = request("rpc.ping") + b"x\n" * 20_000  # each earns a ~150-byte parse error: ~3 MB of replies
        pipe.send(flood)
        conn = pipe.conn
        await until(lambda: pipe.transport.write_paused)  # handled a turn at a time until replies pile up
        waiting = pipe.transport.get_write_buffer_size()
        assert HIGH_WATER < waiting < HIGH_WATER + 128 * 1024, waiting  # bounded, not 3 MB
        assert not pipe.transport.reading
        assert conn.held  # not handled yet
        got: list[dict[str, Any]] = []
        def read() -> bool:  # the client reads: the rest are handled, each answered once
            got.extend(pipe.replies())
            return len(got) >= 20_001
        await until(read)
        assert got[0]["result"] == "pong"
        assert len(got) == 20_001 and all(r["error"]["code"] == -32700 for r in got[1:])
        await until(lambda: pipe.transport.reading)
        pipe.send(request("rpc.ping"))
        assert pipe.replies()[0]["result"] == "pong"
        state.dispatcher.runner.close()
    asyncio.run(main())


def test_send_timeout_aborts_a_client_that_never_reads() -> None:
    async def main() -> None:
        state = serve_in_memory(APP, send_timeout=0.2)
        pipe = Pipe(state)
        pipe.send(request("rpc.ping") + b"x\n" * 20_000)
        await until(lambda: pipe.transport.aborted, timeout=5)
        await until(lambda: pipe.conn.phase is Phase.CLOSED)
        state.dispatcher.runner.close()
    asyncio.run(main())


def test_a_slow_reader_making_progress_is_not_aborted() -> None:
    async def main() -> None:
        state = serve_in_memory(APP, send_timeout=0.2)
        pipe = Pipe(state)
        pipe.send(request("rpc.ping") + b"x\n" * 20_000)
        loop = asyncio.get_running_loop()
        end = loop.time() + 0.8
        while loop.time() < end:  # reads a little every 0.1 s: progress within every --send-timeout
            pipe.transport.take(8 * 1024)
            await asyncio.sleep(0.1)
        assert not pipe.transport.aborted
        state.dispatcher.runner.close()
    asyncio.run(main())


def test_close_after_too_many_wrong_tokens(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret")

    async def main() -> None:
        state = serve_in_memory(APP, token_file=token)
        pipe = Pipe(state)
        pipe.send(b"".join(request("rpc.auth", ["guess"], rid=i) for i in range(MAX_WRONG_TOKENS + 5)))
        replies = pipe.replies()
        assert len(replies) == MAX_WRONG_TOKENS  # the rest are not read
        assert all(r["error"]["code"] == -32003 for r in replies)
        assert pipe.closed
        ok = Pipe(state)  # other connections are not affected
        ok.send(request("rpc.auth", ["s3cret"]))
        assert ok.replies()[0]["result"] is True
        state.dispatcher.runner.close()
    asyncio.run(main())


def test_legacy_dialect_in_memory() -> None:
    async def main() -> None:
        state = serve_in_memory(APP)
        pipe = Pipe(state)
        payload = b'{"entry":"h","func":"ok","param":[5]}'
        pipe.send(f"{len(payload)}.".encode().ljust(11, b"0") + payload)
        await until(lambda: pipe.closed)  # one call per connection: closed once answered
        assert pipe.transport.take() == b'24.00000000{"data": 5, "error": ""}'
        await until(lambda: pipe.conn.phase is Phase.CLOSED)
        state.dispatcher.runner.close()
    asyncio.run(main())
