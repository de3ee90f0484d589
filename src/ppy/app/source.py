"""What a streaming call is made of, below the dispatcher: a :class:`Source` of encoded items.

A function that is a generator (or async generator) *streams*.  Its runner
(``ppy.run``) turns a call into a :class:`Source` that the front end pulls
(``ppy.app.streaming``), or that :func:`collect` drains into one list for a
caller that did not ask for a stream.  This module imports nothing of the
dispatcher, so the dispatcher, discovery and the runners can all use it.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Protocol

from ppy.errors import CallTimeout, InternalError


@dataclass(slots=True)
class Pulled:
    """What one pull gave: encoded items, and when the generator is done, its encoded return value."""

    items: list[bytes] = field(default_factory=list)
    done: bool = False
    result: bytes = b"null"


class Source(Protocol):
    """A running stream as the front ends see it (in-process or in an ``--isolate`` worker)."""

    method: str

    async def pull(self) -> Pulled:
        """The next items (at least one, or ``done``); raises PpyError when the generator failed."""
        ...

    def close(self) -> None:
        """Stop the generator (idempotent, never blocks); its ``finally`` runs as soon as it can."""
        ...


#: Annotations whose first argument is the type of the items a generator function yields.
ITERATOR_ORIGINS = (collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator,
                    collections.abc.AsyncIterator, collections.abc.AsyncIterable, collections.abc.AsyncGenerator)


def item_type(annotation: Any) -> Any:
    """``T`` of ``Iterator[T]``, ``AsyncIterator[T]``, ``Generator[T, ...]`` (and the Iterable and
    AsyncGenerator forms); ``inspect.Parameter.empty`` (unknown) for anything else."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in ITERATOR_ORIGINS and args:
        return args[0]
    return inspect.Parameter.empty


def past_deadline(method: str, timeout: float) -> CallTimeout:
    return CallTimeout(f"{method} streamed past its {timeout:g} s deadline and was stopped; the whole stream "
                       "is one call: make it shorter, or raise --timeout", {"timeout": timeout})


async def collect(source: Source, timeout: float, limit: int) -> bytes:
    """The items of a generator as one encoded JSON list, for callers that did not ask for a stream.

    The list may not grow past ``limit`` bytes (``--max-frame-bytes``): past it the generator is
    closed and the call fails with -32603 naming the limit.  Its return value is dropped (a list is
    the result).
    """
    items: list[bytes] = []
    size = 2
    done = False
    try:
        async with asyncio.timeout(timeout):
            while not done:
                pulled = await source.pull()
                items += pulled.items
                size += sum(len(item) + 1 for item in pulled.items)
                if size > limit:
                    raise InternalError(
                        f"{source.method} is a generator and its items, collected into a list, grew past "
                        f"--max-frame-bytes ({limit} bytes); ask for a stream instead (lines: \"stream\": true, "
                        "HTTP: /stream/..., clients: stream()) or raise the limit",
                        {"max_frame_bytes": limit})
                done = pulled.done
    except TimeoutError:
        raise past_deadline(source.method, timeout) from None
    finally:
        if not done:
            source.close()
    return b"[" + b",".join(items) + b"]"
