"""The Python side of the example: plain functions, nothing imported from ppy."""

from __future__ import annotations

import platform
import statistics


def hello() -> str:
    """The seed's function, unchanged since 2013."""
    return "hello, world."


def greet(name: str) -> str:
    """Greet a visitor by name."""
    return f"Hello, {name}!"


def stats(numbers: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation, computed by Python's statistics module."""
    return {
        "mean": statistics.fmean(numbers),
        "stdev": statistics.stdev(numbers) if len(numbers) > 1 else 0.0,
    }


def python_version() -> str:
    """Which Python answered."""
    return f"Python {platform.python_version()}"
