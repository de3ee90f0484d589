"""Parameter binding and annotated conversion (docs/app-folder.md)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


def raw(a, b=None, *rest, **extra):
    """Unannotated: values keep their JSON types."""
    return {"a": [type(a).__name__, a], "b": [type(b).__name__, b], "rest": list(rest), "extra": extra}


def to_int(n: int) -> list:
    return [type(n).__name__, n]


def to_float(x: float) -> list:
    return [type(x).__name__, x]


def to_bool(flag: bool) -> list:
    return [type(flag).__name__, flag]


def to_str(s: str) -> list:
    return [type(s).__name__, s]


def ints(values: list[int]) -> list:
    return [[type(v).__name__, v] for v in values]


def point(p: Point) -> list:
    return [type(p).__name__, p.x, p.y]


def maybe(n: Optional[int] = None) -> list:  # noqa: UP045 - Optional on purpose
    return [type(n).__name__, n]


def union(n: int | None = 5) -> list:
    return [type(n).__name__, n]


def color(c: Color) -> str:
    return c.name


def defaults(name: str = "world", times: int = 1, sep: str = " ") -> str:
    """Greet ``name`` several times.

    The rest of the docstring is the description.
    """
    return sep.join([f"hi {name}"] * times)


def kwonly(a: int, *, scale: int = 10) -> int:
    return a * scale


def posonly(a: int, /, b: int = 2) -> int:
    return a - b


def star(*values: int) -> list:
    return [type(v).__name__ for v in values]


def nothing() -> str:
    return "nothing"
