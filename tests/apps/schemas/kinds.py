"""One function per annotation ppy supports, each returning what it got: discovery and OpenAPI
schemas of every kind are checked by third-party tools (tests/test_schemas.py, tests/test_openapi.py)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import typing
import uuid
from typing import Any, Literal, NamedTuple, TypedDict

import msgspec


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: float
    y: float
    label: str = ""


class Item(msgspec.Struct):
    name: str
    price: decimal.Decimal
    tags: list[str] = []


class Cat(msgspec.Struct, tag=True):
    lives: int


class Dog(msgspec.Struct, tag=True):
    good: bool


class Pair(NamedTuple):
    left: int
    right: str


class Options(TypedDict):
    verbose: bool
    depth: int


@dataclasses.dataclass
class Tree:
    value: int
    children: list[Tree] = dataclasses.field(default_factory=list)


def integer(n: int) -> int:
    return n


def number(x: float) -> float:
    return x


def text(s: str) -> str:
    return s


def flag(b: bool) -> bool:
    return b


def nothing(value: None = None) -> None:
    return value


def raw(data: bytes) -> bytes:
    return data


def money(amount: decimal.Decimal) -> decimal.Decimal:
    return amount


def moment(at: datetime.datetime) -> datetime.datetime:
    return at


def day(d: datetime.date) -> datetime.date:
    return d


def clock(t: datetime.time) -> datetime.time:
    return t


def span(td: datetime.timedelta) -> datetime.timedelta:
    return td


def ident(u: uuid.UUID) -> uuid.UUID:
    return u


def colour(c: Colour) -> Colour:
    return c


def level(lv: Level) -> Level:
    return lv


def choice(mode: Literal["fast", "slow"]) -> Literal["fast", "slow"]:
    return mode


def ints(xs: list[int]) -> list[int]:
    return xs


def unique(xs: set[int], names: frozenset[str]) -> list[int]:
    return [*sorted(xs), len(names)]


def pair(p: tuple[int, str]) -> tuple[int, str]:
    return p


def many(xs: tuple[int, ...]) -> tuple[int, ...]:
    return xs


def mapping(m: dict[str, float]) -> dict[str, float]:
    return m


def maybe(n: int | None = None) -> int | None:
    return n


def either(v: int | str) -> int | str:
    return v


def point(p: Point) -> Point:
    return p


def item(it: Item) -> Item:
    return it


def pet(p: Cat | Dog) -> Cat | Dog:
    return p


def named(p: Pair) -> Pair:
    return p


def options(o: Options) -> Options:
    return o


def tree(t: Tree) -> Tree:
    return t


def anything(value: Any) -> Any:
    return value


def untyped(value, other=1):  # type: ignore[no-untyped-def]
    return [value, other]


def star(*values: int, **named: str) -> dict[str, Any]:
    return {"values": list(values), "named": named}


def shapes(a: int, /, b: str = "b", *, c: bool = False) -> list[typing.Any]:
    return [a, b, c]
