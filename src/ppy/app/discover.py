"""The ``rpc.discover`` document: OpenRPC 1.2 generated from signatures.

Parameter and result schemas come from the annotations (via msgspec's JSON
Schema generator, rewritten to the draft-07 JSON Schema that OpenRPC tools
read: see :mod:`ppy.app.schema`), defaults from the signature, summaries from
docstrings.
Extensions a generator can rely on: ``x-python-type`` on each parameter and
result (the annotation as written), ``x-signature`` per method, and
``x-ppy-stream: true`` on a generator function (its result schema is then the
type of its items: docs/streaming.md).

Only callable functions are described: an entry that failed to load (an
import error, a file resolving outside the app folder) is not in the
document at all — generated clients and the console would offer functions
that cannot be called, and a refusal's text names paths outside the app
folder.  Operators see those failures in the start-up log and in
``ppy ls APP_DIR`` (on stderr).
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from ppy.app.function import Function, type_text
from ppy.app.registry import Registry
from ppy.app.schema import schema_for
from ppy.app.source import item_type

OPENRPC_VERSION = "1.2.6"


def _schema(tp: Any) -> dict[str, Any]:
    """Standalone draft-07 (what OpenRPC tools read): a recursive type's definitions travel with it."""
    schema, definitions = schema_for(tp, "draft-07", "#/definitions/")
    if definitions:
        schema["definitions"] = definitions
    return schema


def _jsonable(value: Any) -> bool:
    try:
        msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def describe_method(fn: Function) -> dict[str, Any]:
    params = []
    for name, p in fn.signature.parameters.items():
        tp = fn.hints.get(name, inspect.Parameter.empty)
        schema = _schema(tp)
        if p.default is not inspect.Parameter.empty and _jsonable(p.default):
            schema["default"] = p.default
        item: dict[str, Any] = {
            "name": name,
            "required": p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD),
            "schema": schema,
            "x-python-type": type_text(tp),
        }
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY):
            item["x-kind"] = p.kind.name.lower()
        params.append(item)
    ret = fn.hints.get("return", inspect.Parameter.empty)
    if fn.streams:  # [stream] a generator: its result schema is the type of its items
        ret = item_type(ret)
    method: dict[str, Any] = {
        "name": fn.method,
        "params": params,
        "result": {"name": "result", "schema": _schema(ret), "x-python-type": type_text(ret)},
        "x-signature": fn.describe(),
        "x-async": fn.is_async,
    }
    if fn.streams:
        method["x-ppy-stream"] = True
    if fn.summary:
        method["summary"] = fn.summary
    if fn.doc:
        method["description"] = fn.doc
    return method


def document(registry: Registry, version: str) -> dict[str, Any]:
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": f"ppy app {registry.app_dir.name}", "version": version},
        "methods": [describe_method(fn) for fn in registry.functions.values()],
    }
