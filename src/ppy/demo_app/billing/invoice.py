"""Typed parameters are converted from JSON: dataclasses, lists, dates."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal


@dataclass
class Line:
    item: str
    qty: int
    price: Decimal


@dataclass
class Invoice:
    lines: list[Line]
    total: Decimal
    issued: datetime.date


def total(lines: list[Line], vat_percent: int = 0) -> Invoice:
    """Total an invoice; each line is {"item", "qty", "price"}."""
    net = sum((line.qty * line.price for line in lines), Decimal(0))
    gross = net * (100 + vat_percent) / 100
    return Invoice(lines, gross.quantize(Decimal("0.01")), datetime.date.today())
