"""Stepping a generator function's items out, one pull at a time: what a stream is made of.

A streaming call is a *source* of encoded items that its front end pulls
(``ppy.server.tcp.stream``, ``ppy.server.http.stream``, or the collector of
``ppy.app.streaming``).  A front end pulls only while its connection may take
more output, so a slow reader pauses the generator instead of growing the
server's memory:

* a sync generator advances in the thread pool, one job per pull; the job
  runs at most ``BATCH_ITEMS`` items (or ``BATCH_BYTES``) ahead and hands
  each item to the loop as soon as it is encoded, so a slow generator's items
  are not held back to fill a batch.  Between pulls it holds no thread;
* an async generator advances on the event loop inside the puller's task.
  Items it produces without waiting are taken in one pull (up to the same
  limits); an item that needs a wait ends the pull when items are already in
  hand, and the next pull resumes that same wait (no task per item).

:meth:`close` ends the generator (``GeneratorExit`` at its ``yield``, so its
``finally`` blocks run): at once when it is between items, else as soon as
the item it is computing is done (Python cannot interrupt a running thread;
``--isolate`` kills a worker that does not give up within 1 s).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

from ppy.app.function import Function
from ppy.app.source import Pulled, Source
from ppy.errors import PpyError
from ppy.run.forksafe import state as _fork
from ppy.run.lane import Pool
from ppy.wire import jsonvalue

#: Resumes a coroutine whose first step already ran and yielded (coroutine, what it yielded).
Resumer = Callable[[Any, Any], Awaitable[Any]]
#: Items one pull may produce ahead of the connection (sync job or async burst).
BATCH_ITEMS = 64
#: ... and their encoded size: one pull never holds more than about this much.
BATCH_BYTES = 64 * 1024


def _encode_end(value: Any) -> bytes:
    return jsonvalue.encode(value)


def _encode_item(method: str, value: Any) -> bytes:
    try:
        return jsonvalue.encode(value)
    except PpyError as exc:
        exc.message = f"{method} yielded an item that cannot be sent: {exc.message}"
        exc.args = (exc.message,)
        raise


#: What a sync job hands the loop: an item, the end (a Pulled with ``done``) or an error, or the
#: job's own end (None, None), which lets a puller waiting on an empty job start the next one.
_Posted = tuple[bytes | None, Pulled | PpyError | None]


class SyncSource:
    """A sync generator stepped in the pool, one job per pull (see the module docstring)."""

    def __init__(self, method: str, gen: Generator[Any, Any, Any], pool: Pool, debug: bool) -> None:
        self.method = method
        self.gen = gen
        self.pool = pool
        self.debug = debug
        self.loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._running = False  # a job is stepping the generator (guarded by _lock)
        self._closing = False  # close() was called (guarded by _lock)
        self._closed = False  # gen.close() was done or handed to a thread (guarded by _lock)
        self._out: deque[_Posted] = deque()  # appended by the job's thread, drained by pull()
        self._ended: Pulled | PpyError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wake_posted = False

    async def pull(self) -> Pulled:
        pulled = Pulled()
        while True:
            out = self._out
            while out:
                item, end = out.popleft()
                if item is not None:
                    pulled.items.append(item)
                elif end is not None:
                    self._ended = end
            if pulled.items or self._ended is not None:
                break
            with self._lock:
                start = not self._running and not self._closing
                self._running = self._running or start
            if start:
                self.pool.submit(self._job)
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        end = self._ended
        if isinstance(end, PpyError):
            if not pulled.items:  # items produced before the error go out first; the error next pull
                raise end
        elif end is not None:
            pulled.done, pulled.result = True, end.result
        return pulled

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            close_now = not self._running and not self._closed
            self._closed = self._closed or close_now
        if close_now:
            try:
                self.pool.submit(self._close_gen)
            except RuntimeError:  # the pool is shut down (server exiting)
                pass

    def _close_gen(self) -> None:
        try:
            self.gen.close()
        except BaseException:  # a generator that raises on close: nothing left to tell anyone
            pass

    def _job(self) -> None:
        """In a pool thread: step the generator up to the batch limits, posting each item at once."""
        from ppy.app.runner import application_error

        size = 0
        try:
            for _ in range(BATCH_ITEMS):
                if self._closing:
                    break
                try:
                    value = next(self.gen)
                    if _fork.child:  # the generator forked: the child must not run the server's code
                        os._exit(0)
                except StopIteration as stop:
                    self._post(None, Pulled(done=True, result=_encode_end(stop.value)))
                    return
                item = _encode_item(self.method, value)
                self._post(item, None)
                size += len(item)
                if size >= BATCH_BYTES:
                    break
        except PpyError as exc:  # an item or the return value that cannot be encoded
            self._post(None, exc)
        except BaseException as exc:  # what the generator raised (SystemExit included)
            self._post(None, application_error(self.method, exc, self.debug))
        finally:
            with self._lock:
                self._running = False
                close_now = self._closing and not self._closed
                self._closed = self._closed or close_now
            if close_now:
                self._close_gen()
            self._post(None, None)

    def _post(self, item: bytes | None, end: Pulled | PpyError | None) -> None:
        self._out.append((item, end))
        # Append first, then look at the flag; _wake clears the flag before the puller drains.
        if not self._wake_posted:
            self._wake_posted = True
            try:
                self.loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop closed: nobody pulls any more
                pass

    def _wake(self) -> None:
        self._wake_posted = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class AsyncSource:
    """An async generator stepped on the loop in the puller's task (see the module docstring)."""

    def __init__(self, method: str, agen: AsyncGenerator[Any, Any], debug: bool, resume: Resumer) -> None:
        self.method = method
        self.agen = agen
        self.debug = debug
        self.resume = resume  # ppy.run.threads.Resume: awaits a coroutine whose first step already ran
        self._waiting: Any = None  # an __anext__ suspended at a wait (resumed by the next pull), or _Raise
        self._closed = False

    async def pull(self) -> Pulled:
        from ppy.app.runner import application_error

        pulled = Pulled()
        size = 0
        while len(pulled.items) < BATCH_ITEMS and size < BATCH_BYTES:
            try:
                if self._waiting is not None:
                    step, self._waiting = self._waiting, None
                    value = await step
                else:
                    anext = self.agen.__anext__()
                    try:
                        waits_on = anext.send(None)
                    except StopIteration as got:
                        value = got.value
                    else:
                        rest = self.resume(anext, waits_on)
                        if pulled.items:  # it needs a wait: send what we have, resume it next pull
                            self._waiting = rest
                            return pulled
                        value = await rest
                item = _encode_item(self.method, value)
            except StopAsyncIteration:
                pulled.done = True  # an async generator returns no value
                return pulled
            except (asyncio.CancelledError, PpyError) as exc:
                if pulled.items and isinstance(exc, PpyError):
                    self._waiting = _Raise(exc)
                    return pulled
                raise
            except BaseException as exc:
                error = application_error(self.method, exc, self.debug)
                if pulled.items:  # the items produced before it go out first; the error next pull
                    self._waiting = _Raise(error)
                    return pulled
                raise error from exc
            pulled.items.append(item)
            size += len(item)
        return pulled

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        waiting, self._waiting = self._waiting, None
        coro = getattr(waiting, "coro", None)
        if coro is not None:  # an __anext__ suspended at a wait: end it there, its finally runs now
            try:
                coro.throw(asyncio.CancelledError())
            except BaseException:
                pass
        asyncio.get_running_loop().create_task(self._aclose())

    async def _aclose(self) -> None:
        try:
            async with asyncio.timeout(1.0):
                await self.agen.aclose()
        except BaseException:  # it ignored GeneratorExit or raised on close: nothing more to do
            pass


class _Raise:
    """A deferred error for :class:`AsyncSource`: awaiting it raises (the next pull)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __await__(self) -> Generator[Any, Any, Any]:
        raise self.exc
        yield  # unreachable; makes this a generator


def open_source(fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], pool: Pool,
                debug: bool, resume: Resumer) -> Source:
    """Call the generator function (its body runs at the first pull) and wrap what it returned."""
    gen = fn.fn(*args, **kwargs)
    if isinstance(gen, AsyncGenerator):
        return AsyncSource(fn.method, gen, debug, resume)
    return SyncSource(fn.method, gen, pool, debug)
