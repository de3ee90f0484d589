"""A function that leaks descriptors on purpose: the server must go on answering new clients."""

import os

_held: list[int] = []


def hog() -> int:
    """Open /dev/null until the process is out of descriptors; keep them all."""
    try:
        while True:
            _held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    return len(_held)


def free() -> int:
    """Close what hog() opened."""
    count = len(_held)
    while _held:
        os.close(_held.pop())
    return count
