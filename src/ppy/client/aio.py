"""``ppy.AsyncClient``: asyncio client with many calls in flight on one connection.

Requests are pipelined on one lines-dialect connection; a reader task
matches replies to waiting futures by ``id``, so replies may come back in
any order.  A lost connection fails the calls in flight *on that
connection* with ConnectError (a request on the wire is never re-sent: the
server may have run it) and the next call reconnects.  Each connection keeps
its own table of waiting calls, so a dying old connection can never fail
calls already sent on its replacement.  Restarts: a refused connect is
retried with a short back-off until ``connect_timeout``; when the server says
``rpc.goaway`` (it hands over to a successor) new calls go to a fresh
connection, and a call on a reused connection closed with no reply after
``rpc.goaway`` (so it never ran) is sent again on a fresh one.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import weakref
from collections import deque
from pathlib import Path
from typing import Any

import msgspec

from ppy.client.common import (
    DEFAULT_URL,
    GOAWAY,
    REFUSED_FIRST_PAUSE,
    REFUSED_MAX_PAUSE,
    Address,
    Namespace,
    build_params,
    is_notification,
    next_pause,
    refused,
    result_of,
    tls_context,
    tls_failure,
)
from ppy.client.errors import ClientError, ClientTimeout, ConnectError
from ppy.wire import jsonrpc

_decode = msgspec.json.decode
READ_LIMIT = 1 << 30


class _Link:
    """One open connection and the calls waiting for a reply on it."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        # Streams in progress, fed their items and response by the reader; weak, so that dropping a
        # stream's iterator cancels it (AsyncStream.__del__).
        self.streams: weakref.WeakValueDictionary[int, AsyncStream] = weakref.WeakValueDictionary()
        self.reader_task: asyncio.Task[None] | None = None
        self.closed = False
        self.goaway = False  # the server said rpc.goaway: no new calls on this connection
        self.sent = 0  # requests written so far: a call after the first reuses the connection

    @property
    def usable(self) -> bool:
        return not self.closed and not self.goaway and not self.writer.is_closing()


class _GoneAway(ConnectError):
    """Closed with no reply after ``rpc.goaway``: the request never ran, send it again."""


class AsyncClient:
    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 30.0, connect_timeout: float = 5.0,
                 token: str | None = None, ca: str | Path | None = None, cert: str | Path | None = None,
                 key: str | Path | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.address = Address.parse(url)
        if self.address.scheme not in ("tcp", "tls", "unix"):
            raise ClientError("AsyncClient speaks tcp://, tls:// and unix://; use ppy.Client for http(s)://")
        self.ssl_context = tls_context(self.address, ca=ca, cert=cert, key=key, ssl_context=ssl_context)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.token = token
        self._ids = itertools.count(1)
        self._link: _Link | None = None
        self._lock = asyncio.Lock()

    async def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        return await self.request(method, build_params(args, kwargs), timeout=timeout)

    async def request(self, method: str, params: list[Any] | dict[str, Any] | None = None, *,
                      timeout: float | None = None) -> Any:
        link = await self._connection()
        try:
            reply = await self._exchange(link, method, [] if params is None else params, timeout)
        except _GoneAway:  # the restarting server never saw it: once more, on a fresh connection
            reply = await self._exchange(await self._connection(), method, [] if params is None else params,
                                         timeout)
        return result_of(reply)

    def stream(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> AsyncStream:
        """An async iterator over a generator function's items as the server produces them.

        Other calls on the connection keep working meanwhile.  ``timeout`` bounds the whole stream on
        the server; each item may take up to the client's ``timeout``.  Leaving early (``aclose()``,
        ``async with client.stream(...)``, or dropping the iterator) cancels it on the server.  The
        generator's return value is ``.result`` once the loop ended.
        """
        return AsyncStream(self, method, build_params(args, kwargs), timeout)

    async def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        link = await self._connection()
        link.writer.write(jsonrpc.encode_request(method, build_params(args, kwargs), notify=True) + b"\n")
        await link.writer.drain()

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        if link.reader_task is not None:
            link.reader_task.cancel()
        link.writer.close()
        try:
            await link.writer.wait_closed()
        except OSError:
            pass
        _fail(link, ConnectError(f"connection to {self.url} closed by the client"))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Namespace:
        if name.startswith("_"):
            raise AttributeError(name)
        return Namespace(self, name)

    async def _exchange(self, link: _Link, method: str, params: list[Any] | dict[str, Any],
                        timeout: float | None) -> Any:
        """Send one request on ``link`` and wait for its reply object (not yet unpacked)."""
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link.waiting[rid] = fut
        wait = self.timeout if timeout is None else timeout
        reused = link.sent > 0
        link.sent += 1
        try:
            link.writer.write(jsonrpc.encode_request(method, params, rid, timeout=timeout) + b"\n")
            try:
                async with asyncio.timeout(wait):
                    return await fut
            except TimeoutError:
                raise ClientTimeout(f"no reply to {method} from {self.url} within {wait:g} s") from None
            except _GoneAway:
                if reused:
                    raise
                raise ConnectError(f"{self.url} closed the connection before replying") from None
        finally:
            link.waiting.pop(rid, None)
            if link.goaway and not link.waiting:
                link.writer.close()  # every call on it was answered: leave the draining server

    async def _connection(self) -> _Link:
        link = self._link
        if link is not None and link.usable:
            return link
        async with self._lock:
            link = self._link
            if link is not None and link.usable:
                return link
            addr = self.address
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.connect_timeout
            pause = REFUSED_FIRST_PAUSE
            refusal: OSError | None = None
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        if addr.scheme == "unix":
                            reader, writer = await asyncio.open_unix_connection(addr.path, limit=READ_LIMIT)
                        elif self.ssl_context is not None:
                            reader, writer = await asyncio.open_connection(
                                addr.host, addr.port, limit=READ_LIMIT, ssl=self.ssl_context,
                                server_hostname=addr.host)
                        else:
                            reader, writer = await asyncio.open_connection(addr.host, addr.port,
                                                                           limit=READ_LIMIT)
                    break
                except ssl.SSLError as exc:
                    raise ConnectError(tls_failure(self.url, exc)) from None
                except TimeoutError:
                    if refusal is not None:  # refused until the deadline: nothing listens
                        raise ConnectError(f"cannot connect to {self.url}: {refusal.strerror or refusal} (retried "
                                           f"for {self.connect_timeout:g} s, connect_timeout); is `ppy serve` "
                                           "running?") from None
                    raise ClientTimeout(f"connecting to {self.url} took over {self.connect_timeout:g} s "
                                        "(connect_timeout)") from None
                except OSError as exc:
                    remaining = deadline - loop.time()
                    if refused(exc) and remaining > 0:  # nothing was sent: a restart's gap, try again
                        refusal = exc
                        await asyncio.sleep(next_pause(pause, remaining))
                        pause = min(pause * 2, REFUSED_MAX_PAUSE)
                        continue
                    again = f" (retried for {self.connect_timeout:g} s, connect_timeout)" if refused(exc) else ""
                    raise ConnectError(f"cannot connect to {self.url}: {exc.strerror or exc}{again}; "
                                       "is `ppy serve` running?") from None
            link = _Link(writer)
            link.reader_task = asyncio.get_running_loop().create_task(self._read(reader, link))
            if self.token is not None:
                # Authenticate before anyone else may use the connection.
                try:
                    result_of(await self._exchange(link, "rpc.auth", [self.token], None))
                except BaseException:
                    link.reader_task.cancel()
                    writer.close()
                    raise
            self._link = link
            return link

    async def _read(self, reader: asyncio.StreamReader, link: _Link) -> None:
        error: Exception = ConnectError(f"{self.url} closed the connection")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                reply = _decode(line)
                if is_notification(reply):
                    method = reply.get("method")
                    if method == "rpc.item":
                        params = reply.get("params") or {}
                        sid = params.get("id")
                        stream = link.streams.get(sid) if isinstance(sid, int) else None
                        if stream is not None:
                            await stream.feed(params.get("item"))
                    elif method == GOAWAY:
                        link.goaway = True  # new calls go to a fresh connection; this one still answers
                        if self._link is link:
                            self._link = None
                        if not link.waiting and not link.streams:
                            link.writer.close()
                    continue
                for item in reply if isinstance(reply, list) else [reply]:
                    rid = item.get("id") if isinstance(item, dict) else None
                    fut = link.waiting.get(rid) if isinstance(rid, int) else None
                    if fut is not None and not fut.done():
                        fut.set_result(item)
                    elif isinstance(rid, int) and (ended := link.streams.get(rid)) is not None:
                        ended.end(item)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            error = ConnectError(f"connection to {self.url} broke: {exc}")
        finally:
            link.closed = True
            link.writer.close()
            if self._link is link:
                self._link = None
            if link.goaway and isinstance(error, ConnectError):
                error = _GoneAway(f"{self.url} said rpc.goaway and closed the connection")
            _fail(link, error)


def _fail(link: _Link, error: Exception) -> None:
    for fut in link.waiting.values():
        if not fut.done():
            fut.set_exception(error)
    for stream in link.streams.values():
        stream.wake()


class AsyncStream:
    """``AsyncClient.stream()``: an async iterator over a stream's items, also an async context manager.

    Items wait in a queue of at most ``MAX_QUEUED`` for the loop to take them; past that the
    connection's reader waits too, so the server sees a slow reader and pauses the generator.
    """

    MAX_QUEUED = 1024

    def __init__(self, client: AsyncClient, method: str, params: list[Any] | dict[str, Any],
                 timeout: float | None) -> None:
        self.client, self.method, self.params, self.timeout = client, method, params, timeout
        self.result: Any = None
        self._items: deque[Any] = deque()
        self._link: _Link | None = None
        self._rid = 0
        self._reply: Any = None  # the stream's response, once it came
        self._changed = asyncio.Event()  # an item or the response arrived, or the connection broke
        self._room = asyncio.Event()  # the queue has room again
        self._room.set()
        self._done = False

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Any:
        if self._link is None:
            await self._start()
        link = self._link
        assert link is not None
        while True:
            if self._items:
                item = self._items.popleft()
                if len(self._items) < self.MAX_QUEUED:
                    self._room.set()
                return item
            if self._done:
                raise StopAsyncIteration
            if self._reply is not None:
                self._finish()
                self.result = result_of(self._reply)
                raise StopAsyncIteration
            if link.closed:
                self._finish()
                raise ConnectError(f"connection to {self.client.url} closed during the stream of {self.method}")
            self._changed.clear()
            try:
                async with asyncio.timeout(self.client.timeout):
                    await self._changed.wait()
            except TimeoutError:
                self.cancel()
                raise ClientTimeout(f"no item of {self.method} from {self.client.url} within "
                                    f"{self.client.timeout:g} s") from None

    async def _start(self) -> None:
        client = self.client
        link = self._link = await client._connection()
        self._rid = rid = next(client._ids)
        link.streams[rid] = self
        obj: dict[str, Any] = {"jsonrpc": "2.0", "method": self.method, "params": self.params, "id": rid,
                               "stream": True}
        if self.timeout is not None:
            obj["timeout"] = self.timeout
        link.writer.write(msgspec.json.encode(obj) + b"\n")

    async def feed(self, item: Any) -> None:
        """Called by the connection's reader for each rpc.item of this stream."""
        self._items.append(item)
        self.wake()
        if len(self._items) >= self.MAX_QUEUED:
            self._room.clear()
            await self._room.wait()

    def end(self, reply: Any) -> None:
        """Called by the connection's reader with the stream's response."""
        self._reply = reply
        self.wake()

    def wake(self) -> None:
        self._changed.set()

    def _finish(self) -> None:
        self._done = True
        link = self._link
        if link is not None:
            link.streams.pop(self._rid, None)
        self._room.set()

    def cancel(self) -> None:
        """Stop the stream now, without waiting (also what dropping the iterator does)."""
        if self._done or self._link is None:
            self._done = True
            return
        link = self._link
        ended = self._reply is not None
        self._finish()
        self._items.clear()
        if link.usable and not ended:
            link.writer.write(jsonrpc.encode_request("rpc.cancel", {"id": self._rid}, notify=True) + b"\n")

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()

    def __del__(self) -> None:
        try:
            self.cancel()
        except Exception:  # the loop or the connection is already gone
            pass
