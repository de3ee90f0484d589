"""JSON Schema for an annotation, in the dialect the consuming tools read.

msgspec writes JSON Schema 2020-12 with ``$defs`` at the root and its own
formats.  The tools people point at ppy's documents are stricter:

- OpenRPC 1.2 tools (``@open-rpc/schema-utils-js``, generated clients) read
  schemas as **draft-07** and compile them with ajv in strict mode, which
  refuses unknown keywords (``prefixItems``) and unknown formats
  (``decimal``, ``duration``);
- OpenAPI 3.1 reads **2020-12**, where a tuple *is* ``prefixItems``.

So a schema is rewritten for its dialect: ``Decimal`` and ``timedelta``
become strings with a ``pattern`` (the formats are not standard), tuples
use the dialect's own form, ``discriminator`` (an OpenAPI 3.0 keyword msgspec
adds to tagged unions) is dropped — ``anyOf`` over the tagged objects still
says everything — and ``$ref``\\ s are inlined so every schema stands on its
own (each is compiled on its own by ajv, and resolved against the document
root by dereferencing tools).  A recursive type cannot be inlined: its
definition is returned separately and referenced with ``ref_prefix``.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import msgspec

Dialect = Literal["draft-07", "2020-12"]

#: What ``Decimal(text)`` accepts and ``str(Decimal)`` writes, for finite values: ``-1.50``, ``1E+2``.
DECIMAL_PATTERN = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
#: ISO 8601 durations as msgspec writes and reads ``timedelta`` (days, hours, minutes, seconds; no years,
#: months or weeks): ``P1DT2H3.5S``, ``-PT0.5S``.  No look-arounds: fuzzers generate values from it.
#: Only the last unit may have a fraction.
_I, _N = "[0-9]+", r"[0-9]+(?:\.[0-9]+)?"
_T = rf"T(?:{_I}H{_I}M{_N}S|{_I}H{_N}M|{_I}H{_N}S|{_N}H|{_I}M{_N}S|{_N}M|{_N}S)"
DURATION_PATTERN = rf"^[+-]?P(?:{_N}D|{_I}D{_T}|{_T})$"
_PATTERNS = {"decimal": DECIMAL_PATTERN, "duration": DURATION_PATTERN}
#: Keywords whose value is data, not a schema: never rewritten.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "required"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


def schema_for(tp: Any, dialect: Dialect, ref_prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(schema, definitions)`` for annotation ``tp``: ``definitions`` holds recursive types only.

    An unannotated or unsupported type gives ``{}`` (any JSON value).
    """
    if tp is inspect.Parameter.empty or tp is Any:
        return {}, {}
    if tp is None or tp is type(None):
        return {"type": "null"}, {}
    try:
        raw = dict(msgspec.json.schema(tp))
    except (TypeError, ValueError):
        return {}, {}
    return Rewriter(raw.pop("$defs", {}), dialect, ref_prefix).run(raw)


class Rewriter:
    """One schema's rewrite: inlines ``#/$defs/`` references, keeping recursive ones as references."""

    def __init__(self, defs: dict[str, Any], dialect: Dialect, ref_prefix: str) -> None:
        self.defs = defs
        self.dialect = dialect
        self.ref_prefix = ref_prefix
        self.recursive: dict[str, Any] = {}

    def run(self, schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        out = self.node(schema, ())
        pending = [name for name in self.recursive if self.recursive[name] is None]
        while pending:  # a recursive definition may itself reach another one
            for name in pending:
                self.recursive[name] = self.node(self.defs[name], (name,))
            pending = [name for name in self.recursive if self.recursive[name] is None]
        return out, self.recursive

    def node(self, node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [self.node(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in stack:
                self.recursive.setdefault(name, None)
                return {"$ref": self.ref_prefix + name}
            return self.node(self.defs[name], (*stack, name))
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "discriminator":
                continue
            if key in _DATA_KEYWORDS:
                out[key] = value
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {k: self.node(v, stack) for k, v in value.items()}
            elif key == "format" and value in _PATTERNS:
                out["pattern"] = _PATTERNS[value]
            else:
                out[key] = self.node(value, stack)
        if "prefixItems" in out:  # a tuple or NamedTuple: nothing may follow its items
            if self.dialect == "draft-07":  # which draft-07 spells as an array of item schemas
                out["items"] = out.pop("prefixItems")
                out["additionalItems"] = False
            else:
                out.setdefault("items", False)
        return out
