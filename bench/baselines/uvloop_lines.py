"""A bare uvloop JSON-RPC-over-lines server: the yardstick ppy's lines dialect must match or beat.

What a competent engineer writes in an afternoon, with none of ppy's features
(no limits, no timeouts, no metrics, no parameter binding, no error
mapping): an asyncio Protocol splits lines, decodes each with the chosen JSON
library, and answers.  ``async def`` dispatch is done the fast way: each
coroutine is stepped once in ``data_received`` and only one that really waits
gets a task; the replies of one read are written with one ``write`` call.
This makes the yardstick as hard to beat as we could make it, not a straw man.
With ``--pool N`` sync functions run via ``run_in_executor`` on an N-thread
pool, a thread hop per call (the naive way to keep blocking code off the loop).

Usage: python uvloop_lines.py PORT [--json stdlib|msgspec|orjson] [--pool 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvloop


def hello() -> str:
    return "hello, world."


async def ahello() -> str:
    return "hello, world."


def echo(value: Any) -> Any:
    return value


def sleep(ms: int = 10) -> int:
    time.sleep(ms / 1000)
    return ms


def cpu(n: int = 100000) -> int:
    return sum(i * i for i in range(n))


SYNC: dict[str, Callable[..., Any]] = {"h.hello": hello, "h.echo": echo, "h.sleep": sleep, "h.cpu": cpu}


def codec(name: str) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    if name == "orjson":
        import orjson

        return orjson.loads, orjson.dumps
    if name == "msgspec":
        import msgspec

        return msgspec.json.decode, msgspec.json.encode
    return json.loads, lambda obj: json.dumps(obj).encode()


class LinesProtocol(asyncio.Protocol):
    def __init__(self, loads: Callable[[bytes], Any], dumps: Callable[[Any], bytes],
                 pool: ThreadPoolExecutor | None) -> None:
        self.loads, self.dumps, self.pool = loads, dumps, pool
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        out = []
        for line in lines:
            if not line.strip():
                continue
            coro = self.handle(line)
            try:
                yielded = coro.send(None)
            except StopIteration as done:
                out.append(done.value)
            else:  # it is really waiting (a pool call, a sleep): finish it as a task
                self.loop.create_task(self.finish(_Resume(coro, yielded)))
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    async def finish(self, rest: _Resume) -> None:
        reply = await rest
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

    async def handle(self, line: bytes) -> bytes:
        req = self.loads(line)
        method, params = req["method"], req.get("params", [])
        try:
            if self.pool is not None:
                fn = SYNC[method]
                result = await self.loop.run_in_executor(self.pool, lambda: fn(*params))
            elif method == "h.ahello":
                result = await ahello()
            else:  # the sync function wrapped as a coroutine: what "async def dispatch" means here
                result = await _as_async(SYNC[method], params)
            reply = {"jsonrpc": "2.0", "id": req.get("id"), "result": result}
        except Exception as exc:
            reply = {"jsonrpc": "2.0", "id": req.get("id"), "error": {"code": -32000, "message": str(exc)}}
        return self.dumps(reply) + b"\n"


async def _as_async(fn: Callable[..., Any], params: list[Any]) -> Any:
    return fn(*params)


class _Resume:
    """Await the rest of a coroutine that was already stepped once: pass what it yields to our task."""

    def __init__(self, coro: Any, yielded: Any) -> None:
        self.coro, self.yielded = coro, yielded

    def __await__(self) -> Any:
        coro, yielded = self.coro, self.yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:
                step = coro.throw, exc
            else:
                step = coro.send, sent
            try:
                yielded = step[0](step[1])
            except StopIteration as done:
                return done.value


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--json", choices=("stdlib", "msgspec", "orjson"), default="stdlib")
    parser.add_argument("--pool", type=int, default=0, help="run sync functions on a thread pool of this size")
    args = parser.parse_args()
    loads, dumps = codec(args.json)
    pool = ThreadPoolExecutor(args.pool) if args.pool else None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: LinesProtocol(loads, dumps, pool), "127.0.0.1", args.port,
                                      backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
