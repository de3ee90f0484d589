"""Results beyond plain JSON types (docs/app-folder.md)."""

import dataclasses
import datetime
import decimal
import enum
import uuid


class Level(enum.Enum):
    LOW = 1
    HIGH = "high"


@dataclasses.dataclass
class Line:
    sku: str
    qty: int
    when: datetime.date


def a_tuple():
    return (1, "two", 3.5)


def a_set():
    return {3, 1, 2}


def a_frozenset():
    return frozenset(["only"])


def a_datetime():
    return datetime.datetime(2024, 5, 17, 13, 45, 30, 123456)


def an_aware_datetime():
    return datetime.datetime(2024, 5, 17, 13, 45, 30, tzinfo=datetime.UTC)


def a_date():
    return datetime.date(2024, 5, 17)


def a_time():
    return datetime.time(13, 45, 30)


def a_decimal():
    return decimal.Decimal("12.340")


def a_uuid():
    return uuid.UUID("12345678-1234-5678-1234-567812345678")


def an_enum():
    return [Level.LOW, Level.HIGH]


def a_dataclass():
    return Line("A-1", 2, datetime.date(2024, 1, 2))


def some_bytes():
    return b"\x00\xffhi"


def unicode():
    return "héllo ✓"


def nested():
    return {"t": (1, 2), "d": decimal.Decimal("1.5"), "u": [uuid.UUID(int=1)]}


class Opaque:
    pass


def opaque():
    return Opaque()


def nan():
    return float("nan")


def bigint():
    return 2**70
