import asyncio
import time


def sleep(ms: int) -> int:
    time.sleep(ms / 1000)
    return ms


async def asleep(ms: int) -> int:
    await asyncio.sleep(ms / 1000)
    return ms
