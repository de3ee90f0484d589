"""An in-memory connection: the real Connection and Dispatcher over a fake transport, no subprocess.

``Pipe`` plays the client: ``send`` feeds bytes to the server's protocol, ``read`` takes replies out of
the transport's buffer (as a client reading its socket would), and the transport reports its buffer
size, pauses and resumes reading and calls ``pause_writing``/``resume_writing`` at the water marks the
protocol set, as asyncio's and uvloop's transports do.  Tests run it inside ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

from ppy.config import Config
from ppy.server.main import build_state
from ppy.server.state import ServerState
from ppy.server.tcp.connection import Connection


class FakeTransport(asyncio.Transport):
    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.buffer = bytearray()  # written by the server, not read by the client yet
        self.reading = True
        self.closing = False
        self.aborted = False
        self.high, self.low = 64 * 1024, 16 * 1024
        self.write_paused = False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high if high is not None else self.high
        self.low = low if low is not None else self.high // 4

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "write after close"
        self.buffer += data
        if not self.write_paused and len(self.buffer) > self.high:
            self.write_paused = True
            self.protocol.pause_writing()

    def take(self, n: int | None = None) -> bytes:
        n = len(self.buffer) if n is None else n
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        if self.write_paused and len(self.buffer) <= self.low:
            self.write_paused = False
            self.protocol.resume_writing()
        if self.closing and not self.buffer and not self.aborted:
            self._lost()
        return data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if not self.buffer:
                asyncio.get_running_loop().call_soon(self._lost)

    def abort(self) -> None:
        self.closing = self.aborted = True
        self.buffer.clear()
        asyncio.get_running_loop().call_soon(self._lost)

    def _lost(self) -> None:
        if self.protocol is not None:
            protocol, self.protocol = self.protocol, None  # type: ignore[assignment]
            protocol.connection_lost(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


class Pipe:
    """One client connection to an in-process server."""

    def __init__(self, state: ServerState) -> None:
        self.conn = Connection(state)
        self.transport = FakeTransport(self.conn)
        self.conn.connection_made(self.transport)
        self._inbox = b""

    def send(self, data: bytes) -> None:
        """Deliver bytes the way the event loop would: only while the server reads."""
        assert self.transport.reading, "the server paused reading: the kernel would hold these bytes"
        self.conn.data_received(data)

    def replies(self) -> list[Any]:
        """Read every complete reply line written so far."""
        self._inbox += self.transport.take()
        *done, self._inbox = self._inbox.split(b"\n")
        return [json.loads(line) for line in done if line]

    @property
    def closed(self) -> bool:
        return self.transport.closing


def serve_in_memory(app_dir: Path, **options: Any) -> ServerState:
    """The server state ``ppy serve`` would build (registry, runner, dispatcher), without sockets."""
    config = dataclasses.replace(Config(app_dir=app_dir, http_port=0), **options)
    return build_state(config)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate`` on the loop until it holds (bounded): no fixed sleeps as synchronisation."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached within the time bound")
        await asyncio.sleep(0.005)


def request(method: str, params: Any = None, rid: Any = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params or [], "id": rid}).encode() + b"\n"
