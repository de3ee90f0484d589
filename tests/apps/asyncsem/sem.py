"""Functions for tests/test_async_semantics.py: what asyncio code may rely on inside a call.

Each returns what it observed, so the test can tell the server's way of running a coroutine (stepped
once by the runner, then resumed in the call's task) from a plain ``await`` in a task of its own.
"""

import asyncio
import contextvars

seen_tasks: dict[str, asyncio.Task] = {}  # tag -> the task that ran the call (kept: ids are not reused)
request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")


async def same_task_across_awaits(tag: str) -> dict:
    """The task seen before the first await is the one seen after it, and differs per call."""
    first = asyncio.current_task()
    await asyncio.sleep(0.01)
    second = asyncio.current_task()
    seen_tasks[tag] = first
    return {"same": first is second, "is_task": isinstance(first, asyncio.Task),
            "distinct": len(set(map(id, seen_tasks.values()))) == len(seen_tasks),
            "running": first is not None and not first.done()}


async def task_without_await() -> dict:
    """A call that never waits still runs in a task of its own (not None, not shared, not done), named
    after the method called."""
    task = asyncio.current_task()
    return {"is_task": isinstance(task, asyncio.Task), "done": task.done() if task else None,
            "in_all_tasks": task in asyncio.all_tasks(), "name": task.get_name() if task else None}


factory_made: list[str] = []  # what the task factory of use_task_factory() made, by coroutine


async def use_task_factory(on: bool) -> bool:
    """Install (or remove) a task factory on the server's loop that counts the tasks it makes."""
    loop = asyncio.get_running_loop()
    if not on:
        loop.set_task_factory(None)
        return False

    def factory(loop: asyncio.AbstractEventLoop, coro, **kwargs) -> asyncio.Task:
        factory_made.append(getattr(coro, "__qualname__", "?"))
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    return True


async def factory_count() -> int:
    return len(factory_made)


async def context_isolated(value: str) -> dict:
    """A context variable set by one call is never seen by another, even across awaits."""
    before = request_var.get()
    request_var.set(value)
    await asyncio.sleep(0.02)
    return {"before": before, "after": request_var.get()}


async def own_timeout_expires() -> str:
    """asyncio.timeout in user code: its expiry is a TimeoutError the function itself can catch."""
    try:
        async with asyncio.timeout(0.02):
            await asyncio.sleep(5)
    except TimeoutError:
        return "caught"
    return "not expired"


async def own_timeout_not_reached() -> str:
    async with asyncio.timeout(5):
        await asyncio.sleep(0)
    return "done"


async def task_group_results() -> list[int]:
    """A TaskGroup's children run concurrently inside the call and their results come back."""
    async def child(i: int) -> int:
        await asyncio.sleep(0.01 * (3 - i))
        return i * 10

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(child(i)) for i in range(3)]
    return [t.result() for t in tasks]


async def task_group_failure() -> str:
    """A failing child cancels its siblings and the group raises an ExceptionGroup in the call."""
    async def bad() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("child failed")

    async def slow() -> None:
        await asyncio.sleep(5)

    outcome = "no error"
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(bad())
            group.create_task(slow())
    except* ValueError:
        outcome = "ValueError from the group"
    return outcome


async def cancel_self_then_catch() -> str:
    """current_task().cancel() before an await is delivered at that await, as in any task."""
    asyncio.current_task().cancel()
    try:
        await asyncio.sleep(1)
    except asyncio.CancelledError:
        asyncio.current_task().uncancel()
        return "cancelled at the await"
    return "not cancelled"


async def stubborn(seconds: float) -> str:
    """Swallows every cancellation and waits again: the server must still end the call on time."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while loop.time() < until:
        try:
            await asyncio.sleep(until - loop.time())
        except BaseException:  # the misbehaviour under test
            continue
    return "finished"


async def retries_with_own_timeouts() -> int:
    """A retry loop around asyncio.timeout: each expiry is caught and the function waits again."""
    attempts = 0
    for _ in range(3):
        attempts += 1
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        except TimeoutError:
            continue
    await asyncio.sleep(0.01)
    return attempts
