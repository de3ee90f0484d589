"""async def functions run on the event loop."""

import asyncio


async def double(x: int) -> int:
    await asyncio.sleep(0.001)
    return x * 2


async def fails() -> None:
    await asyncio.sleep(0)
    raise KeyError("missing key")
