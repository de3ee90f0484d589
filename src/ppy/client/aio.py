"""``ppy.AsyncClient``: asyncio client with many calls in flight on one connection.

Requests are pipelined on one lines-dialect connection; a reader task
matches replies to waiting futures by ``id``, so replies may come back in
any order.  A lost connection fails the calls in flight with ConnectError
and the next call reconnects.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec

from ppy.client.common import DEFAULT_URL, Address, Namespace, build_params, result_of
from ppy.client.errors import ClientError, ClientTimeout, ConnectError
from ppy.wire import jsonrpc

_decode = msgspec.json.decode
READ_LIMIT = 1 << 30


class AsyncClient:
    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 30.0, connect_timeout: float = 5.0,
                 token: str | None = None) -> None:
        self.url = url
        self.address = Address.parse(url)
        if self.address.scheme not in ("tcp", "unix"):
            raise ClientError("AsyncClient speaks tcp:// and unix://; use ppy.Client for http://")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.token = token
        self._ids = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._lock = asyncio.Lock()

    async def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        return await self.request(method, build_params(args, kwargs), timeout=timeout)

    async def request(self, method: str, params: list[Any] | dict[str, Any] | None = None, *,
                      timeout: float | None = None) -> Any:
        writer = await self._connection()
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        wait = self.timeout if timeout is None else timeout
        try:
            writer.write(jsonrpc.encode_request(method, [] if params is None else params, rid,
                                                timeout=timeout) + b"\n")
            try:
                async with asyncio.timeout(wait):
                    reply = await fut
            except TimeoutError:
                raise ClientTimeout(f"no reply to {method} from {self.url} within {wait:g} s") from None
        finally:
            self._waiting.pop(rid, None)
        return result_of(reply)

    async def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        writer = await self._connection()
        writer.write(jsonrpc.encode_request(method, build_params(args, kwargs), notify=True) + b"\n")
        await writer.drain()

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            self._reader_task = None
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
            self._writer = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Namespace:
        if name.startswith("_"):
            raise AttributeError(name)
        return Namespace(self, name)

    async def _connection(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        async with self._lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            addr = self.address
            try:
                async with asyncio.timeout(self.connect_timeout):
                    if addr.scheme == "unix":
                        reader, writer = await asyncio.open_unix_connection(addr.path, limit=READ_LIMIT)
                    else:
                        reader, writer = await asyncio.open_connection(addr.host, addr.port, limit=READ_LIMIT)
            except TimeoutError:
                raise ClientTimeout(f"connecting to {self.url} took over {self.connect_timeout:g} s") from None
            except OSError as exc:
                raise ConnectError(f"cannot connect to {self.url}: {exc.strerror or exc}; "
                                   "is `ppy serve` running?") from None
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))
        if self.token is not None:
            await self.request("rpc.auth", [self.token])
        return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        error: Exception = ConnectError(f"{self.url} closed the connection")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                reply = _decode(line)
                for item in reply if isinstance(reply, list) else [reply]:
                    rid = item.get("id") if isinstance(item, dict) else None
                    fut = self._waiting.get(rid) if isinstance(rid, int) else None
                    if fut is not None and not fut.done():
                        fut.set_result(item)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            error = ConnectError(f"connection to {self.url} broke: {exc}")
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(error)
