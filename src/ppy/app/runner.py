"""The contract between the dispatcher and whatever runs a function's call (``ppy.run``).

A runner runs calls in this process (threads, and the event loop for ``async def``) or in
worker processes (``--isolate``); the dispatcher only sees :class:`Runner`.  Whichever it is,
a function that raised reaches the client as :func:`application_error` makes it: the
message and the class name, never a traceback unless ``--debug``, and never a second
failure, whatever the exception's ``str()`` does.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ppy.app.function import Function
from ppy.errors import ApplicationError

if TYPE_CHECKING:
    from ppy.app.source import Source

#: settle(result, None) or settle(None, error): how a runner ends a call it started with a callback.
Settle = Callable[[Any, "BaseException | None"], object]
#: The message of the cancellation that cuts a call's task off at the drain deadline: how the runner tells
#: it from a cancellation the function's own code asked for (ppy.run.threads.Resume).
CUT_OFF_CANCEL = "ppy: drain deadline passed"
#: What a call cut off at the drain deadline answers (-32001).
CUT_OFF = ("server is shutting down and this call did not finish within the drain deadline "
           "(--timeout); it may have run partly: check before retrying")


@dataclass(frozen=True)
class RunnerStatistics:
    """A snapshot of a runner's state, for metrics and the console (all counts since start)."""

    kind: str  # "threads" or "isolate"
    capacity: int  # threads, or worker processes
    busy: int  # worker processes running a call (0 for threads: not tracked per call)
    abandoned: int  # async calls that ignored their deadline's cancellation and were closed
    timeouts: int = 0  # --isolate: workers stopped at a deadline
    crashes: int = 0  # --isolate: workers that died during a call
    recycled: int = 0  # --isolate: workers replaced after --max-jobs or --max-worker-memory


class Runner(Protocol):
    """What runs a function's call: in-process threads and the loop, or isolated worker processes."""

    #: Whether calls run in other processes that import the app themselves (--isolate): a reload
    #: restarts them, so a reload that breaks an entry must not reach them.
    isolated: bool
    #: Called with (seconds, why) each time a worker process is replaced (never for threads).
    respawn_observers: list[Callable[[float, str], None]]

    async def start(self) -> None:
        """Get ready before the server accepts calls; raise RuntimeError with a message if it cannot."""
        ...

    async def aclose(self) -> None:
        """Stop, after the drain: release threads or stop worker processes."""
        ...

    def reload(self) -> None:
        """The app code on disk changed (``--reload``): calls from now on use the new code."""
        ...

    def statistics(self) -> RunnerStatistics: ...

    async def run(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float) -> Any: ...

    def start_sync(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float,
                   settle: Settle) -> bool:
        """Start the call with a callback instead of a task, if this runner can for this function.

        ``settle`` is then called exactly once, on the event loop, with the result or the error
        (a :class:`PpyError`, or any exception, which the dispatcher maps to an internal error).
        """
        ...

    def run_settled(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float,
                    settle: Settle) -> Coroutine[Any, Any, None] | None:
        """For an ``async def``: the coroutine its call's task runs, if this runner has one, else None
        (the dispatcher's task then awaits :meth:`run`).

        It calls ``settle`` exactly once, as :meth:`start_sync` does, also when its task is cancelled
        (with a ``CallTimeout(CUT_OFF)``, then the cancellation goes on).  One coroutine frame between
        the task and an ``async def``, where awaiting :meth:`run` from the dispatcher's costs two
        (docs/performance.md).
        """
        ...

    def stream(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Source:
        """[stream hook] Start a generator function; its items are pulled (ppy.run.streams)."""
        ...

    def close(self) -> None: ...


def describe(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception's ``__str__`` (then ``__repr__``) itself raises."""
    try:
        return str(exc)
    except Exception:
        pass
    try:
        return f"<unprintable {type(exc).__name__}: {object.__repr__(exc)}>"
    except Exception:  # pragma: no cover - object.__repr__ does not raise
        return "<unprintable exception>"


def application_error(method: str, exc: BaseException, debug: bool) -> ApplicationError:
    """The error a client sees when a user function raised: its message and class name.

    Never raises, whatever ``exc`` is: its ``str()`` may raise, its class name may be odd.
    """
    kind = type(exc).__name__
    data: dict[str, Any] = {"type": kind}
    if debug:
        try:
            data["traceback"] = "".join(traceback.format_exception(exc))
        except Exception:
            data["traceback"] = f"<traceback of {kind} could not be formatted>"
    err = ApplicationError(describe(exc) or kind, data)
    err.__cause__ = exc
    return err
