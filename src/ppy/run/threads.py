"""In-process runner: ``async def`` on the event loop, blocking functions in a bounded thread pool.

A timeout here only abandons the wait: Python cannot stop a thread, so a
blocking function past its deadline keeps its pool thread until it returns
(use ``--isolate`` to have the work really stopped).  ``BaseException`` from
user code (``sys.exit()``) is caught so it can never take the server down.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ppy.app.dispatch import application_error
from ppy.app.function import Function
from ppy.errors import CallTimeout


class ThreadRunner:
    def __init__(self, threads: int, *, debug: bool = False) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ppy-call")
        self.debug = debug

    async def run(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float) -> Any:
        try:
            async with asyncio.timeout(timeout) as deadline:
                if fn.is_async:
                    return await fn.fn(*args, **kwargs)
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.pool, _call, fn.fn, args, kwargs)
        except TimeoutError:
            if deadline.expired():
                raise CallTimeout(f"{fn.method} ran past its {timeout:g} s deadline; make it faster, "
                                  "or raise --timeout", {"timeout": timeout}) from None
            raise application_error(fn.method, TimeoutError(), self.debug) from None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            raise application_error(fn.method, exc, self.debug) from exc

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)
