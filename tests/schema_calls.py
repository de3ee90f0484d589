"""A correct call of every method of the demo app and of tests/apps/schemas, for the schema checks.

tests/test_schemas.py checks that the third-party tools accept each call, and that the actual result
matches the method's result schema; tests/test_openapi.py sends them to ``/call``.
"""

from __future__ import annotations

from typing import Any

DEMO: dict[str, Any] = {
    "h.hello": [],
    "h.ahello": [],
    "h.greet": ["bob", 2],
    "h.add": [1.5, 2],
    "h.echo": [{"any": ["json", 1]}],
    "h.sleep": [1],
    "h.asleep": [1],
    "h.cpu": [100],
    "h.pid": [],
    "h.words": ["a b", 1],  # a generator: a plain call answers a list; each item is checked
    "billing.invoice.total": [[{"item": "tea", "qty": 2, "price": "1.50"}], 20],
}

KINDS: dict[str, Any] = {
    "kinds.integer": [3],
    "kinds.number": [2.5],
    "kinds.text": ["hé"],
    "kinds.flag": [True],
    "kinds.nothing": [None],
    "kinds.raw": ["aGVsbG8="],
    "kinds.money": ["-12.50"],
    "kinds.moment": ["2024-02-29T12:30:00+00:00"],
    "kinds.day": ["2024-02-29"],
    "kinds.clock": ["12:30:00"],
    "kinds.span": ["P1DT2H3.5S"],
    "kinds.ident": ["6f1e0b2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b"],
    "kinds.colour": ["red"],
    "kinds.level": [2],
    "kinds.choice": ["fast"],
    "kinds.ints": [[1, 2, 3]],
    "kinds.unique": [[3, 1], ["a", "b"]],
    "kinds.pair": [[1, "a"]],
    "kinds.many": [[1, 2, 3]],
    "kinds.mapping": [{"a": 1.5}],
    "kinds.maybe": [None],
    "kinds.either": ["x"],
    "kinds.point": [{"x": 1.0, "y": 2.0, "label": "p"}],
    "kinds.item": [{"name": "tea", "price": "1.50", "tags": ["hot"]}],
    "kinds.pet": [{"type": "Cat", "lives": 9}],
    "kinds.named": [[1, "a"]],
    "kinds.options": [{"verbose": True, "depth": 2}],
    "kinds.tree": [{"value": 1, "children": [{"value": 2, "children": []}]}],
    "kinds.anything": [{"k": [1, None]}],
    "kinds.untyped": ["v", 2],
    "kinds.star": [1],  # OpenRPC has no variadic params: a *values schema is one item's
    "kinds.shapes": [1, "x"],
}
