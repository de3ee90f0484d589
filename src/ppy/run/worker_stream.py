"""A streaming call inside an ``--isolate`` worker: items cross the pipe as they come.

Frames, in addition to those of :mod:`ppy.run.worker`:

===========  =====================================================================
direction    payload
===========  =====================================================================
worker →     ``I`` + one item encoded as JSON, as soon as the generator yields it
parent →     ``{"cancel": true}``: stop the stream (rpc.cancel, deadline, client gone)
worker →     ``C`` once the generator was closed after a cancel (its finally ran)
===========  =====================================================================

The stream ends with the usual ``R`` (the return value) or ``E`` frame.
Between items the worker looks for a cancel frame without blocking; a
generator busy computing an item sees it after that item, and the parent
kills a worker that has not answered ``C`` within a second.  A pipe the
parent does not read (its client reads nothing) blocks the worker's next
write: that is the stream's backpressure, the generator is paused there.
"""

from __future__ import annotations

import asyncio
import os
import select
from collections.abc import Callable
from typing import Any, BinaryIO

ITEM = b"I"
CLOSED = b"C"
CANCEL = b'{"cancel":true}'


def _cancel_waiting(chan_in: BinaryIO) -> bool:
    """Whether the parent sent something (a cancel frame, or EOF) since the call started."""
    readable, _, _ = select.select([chan_in], [], [], 0)
    return bool(readable)


def _read_ahead(chan_in: BinaryIO) -> bool:
    """Whether the buffered reader already holds bytes after the request (a cancel sent right after
    it, read in the same gulp): ``select`` cannot see those.  Looked at once, when the stream starts:
    during the stream nothing reads the channel until a cancel is seen."""
    fd = chan_in.fileno()
    os.set_blocking(fd, False)
    try:
        return bool(chan_in.peek(1))  # type: ignore[attr-defined]  # a BufferedReader: b"" when it holds none
    except BlockingIOError:
        return False
    finally:
        os.set_blocking(fd, True)


def run(gen: Any, loop: Callable[[], asyncio.AbstractEventLoop], chan_in: BinaryIO,
        send: Callable[[bytes], None], result: Callable[[Any], bytes], error: Callable[[BaseException], bytes],
        recv: Callable[[BinaryIO], Any]) -> None:
    """Step ``gen`` (sync or async generator), sending each item; end with R, E or, when cancelled, C."""
    from ppy.wire import jsonvalue

    is_async = hasattr(gen, "__anext__")
    early = _read_ahead(chan_in)
    try:
        while True:
            if early or _cancel_waiting(chan_in):
                recv(chan_in)  # the cancel frame (or EOF: the worker's main loop sees it next)
                try:
                    if is_async:
                        loop().run_until_complete(gen.aclose())
                    else:
                        gen.close()
                finally:
                    send(CLOSED)
                return
            try:
                value = loop().run_until_complete(gen.__anext__()) if is_async else next(gen)
            except StopIteration as stop:
                send(result(stop.value))
                return
            except StopAsyncIteration:
                send(result(None))
                return
            send(ITEM + jsonvalue.encode(value))
    except BaseException as exc:  # the generator raised, or an item could not be encoded
        send(error(exc))
