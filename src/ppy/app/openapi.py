"""``GET /openapi.json``: an OpenAPI 3.1 document for the plain HTTP routes ``/call/{entry}/{func}``.

For API gateways, openapi-generator (PHP Guzzle clients and the like),
FastAPI users and fuzzers such as schemathesis.  Each function is one path
with a ``POST`` operation, plus a ``GET`` one when every parameter can be a
query parameter (text or a scalar the annotation parses: ``int``, ``Decimal``,
``date``...).  Schemas come from the same annotations as ``rpc.discover``
(:mod:`ppy.app.schema`), in the JSON Schema 2020-12 dialect OpenAPI 3.1 uses.

The ``POST`` body is the keyword form (a JSON object, one property per
parameter) — except for functions with positional-only or ``*args``
parameters, which only the positional form (a JSON array) can call.  Every
operation lists the error responses ``/call`` gives, with its error shape.
Entries that failed to load are not described (they cannot be called).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import inspect
import types
import typing
import uuid
from typing import Any

from ppy.app.function import Function, type_text
from ppy.app.registry import Registry
from ppy.app.schema import schema_for
from ppy.app.source import item_type

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/"
#: Annotations a query string can carry: the text as is, or text the annotation parses.
_QUERY_SCALARS: tuple[type, ...] = (str, int, float, bool, decimal.Decimal, datetime.date, datetime.datetime,
                                    datetime.time, datetime.timedelta, uuid.UUID, enum.Enum)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "integer", "description": "the JSON-RPC error code (-32602, -32601, ...)"},
                "message": {"type": "string", "description": "what went wrong and what to do"},
                "data": {"description": "details: data.type is the exception class of an application error"},
            },
        }
    },
}
#: status -> when /call answers it (docs/http.md has the table of codes).
ERRORS: dict[str, str] = {
    "400": "invalid params (names the parameter), or a body that is not a JSON array or object",
    "401": "the server has a token and the request did not carry it (Authorization: Bearer ...)",
    "404": "no such entry or function",
    "500": "the function raised (data.type is the exception class), its result is not JSON, or its worker crashed",
    "503": "overloaded (--max-inflight) or draining: retry later",
    "504": "the call ran past --timeout",
}
POST_ERRORS: dict[str, str] = {
    "408": "the body did not arrive within --request-timeout",
    "413": "the body is larger than --max-frame-bytes",
    "415": "the body is not Content-Type: application/json",
}


def document(registry: Registry, version: str, *, token: bool = False) -> dict[str, Any]:
    """The OpenAPI document of every callable function (``token``: the server requires a Bearer token)."""
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for fn in registry.functions.values():
        entry, _, func = fn.method.rpartition(".")
        paths[f"/call/{entry}/{func}"] = describe_path(fn, components)
    responses = {status: {"description": why, "content": {"application/json": {"schema": {"$ref": _REF + "Error"}}}}
                 for status, why in (ERRORS | POST_ERRORS).items()}
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"ppy app {registry.app_dir.name}", "version": version,
                 "description": "Plain HTTP calls of the app's functions: POST a JSON object of keyword arguments "
                                "(or an array of positional ones), or GET with query parameters. The same functions "
                                "answer JSON-RPC 2.0 at POST /rpc (see /openrpc.json)."},
        "paths": paths,
        "components": {"schemas": components, "responses": responses},
    }
    if token:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def describe_path(fn: Function, components: dict[str, Any]) -> dict[str, Any]:
    """The path item of one function: ``post``, and ``get`` when its parameters fit a query string."""
    def schema(tp: Any) -> dict[str, Any]:
        out, definitions = schema_for(tp, "2020-12", _REF)
        components.update(definitions)  # recursive types only; the rest is inlined
        return out

    params = list(fn.signature.parameters.values())
    returns = fn.hints.get("return", _EMPTY)
    if fn.streams:  # a generator: /call answers with its items collected into a list
        element = item_type(returns)
        returns = list if element is _EMPTY else list[element]  # type: ignore[valid-type]
    result = {"type": "object", "required": ["result"], "properties": {"result": schema(returns)}}
    common: dict[str, Any] = {"tags": [fn.method.rpartition(".")[0]]}
    if fn.summary:
        common["summary"] = fn.summary
    if fn.doc:
        common["description"] = f"`{fn.describe()}`\n\n{fn.doc}"
    else:
        common["description"] = f"`{fn.describe()}`"
    item: dict[str, Any] = {
        "post": {**common, "operationId": _operation_id(fn, "post"), "requestBody": _body(fn, params, schema),
                 "responses": _responses(result, post=True)},
    }
    if all(_query_fit(fn, p) for p in params):
        item["get"] = {**common, "operationId": _operation_id(fn, "get"),
                       "parameters": [_query_parameter(fn, p, schema) for p in params],
                       "responses": _responses(result, post=False)}
    return item


_EMPTY = inspect.Parameter.empty


def _operation_id(fn: Function, verb: str) -> str:
    return f"{verb}_{fn.method.replace('.', '_')}"


def _body(fn: Function, params: list[inspect.Parameter], schema: Any) -> dict[str, Any]:
    positional = any(p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) for p in params)
    body: dict[str, Any]
    if positional:  # only an array can carry these; keyword-only parameters keep their defaults
        items = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        star = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
        body = {"type": "array", "prefixItems": [_with_default(schema(fn.hints.get(p.name, _EMPTY)), p) for p in items],
                "minItems": sum(p.default is _EMPTY for p in items),
                "description": "positional arguments"}
        body["items"] = schema(fn.hints.get(star.name, _EMPTY)) if star is not None else False
        if not items:
            del body["prefixItems"]
    else:
        named = [p for p in params if p.kind is not p.VAR_KEYWORD]
        extra = next((p for p in params if p.kind is p.VAR_KEYWORD), None)
        body = {"type": "object",
                "properties": {p.name: _with_default(schema(fn.hints.get(p.name, _EMPTY)), p) for p in named},
                "additionalProperties": schema(fn.hints.get(extra.name, _EMPTY)) if extra is not None else False,
                "description": "keyword arguments"}
        required = [p.name for p in named if p.default is _EMPTY]
        if required:
            body["required"] = required
    needed = body.get("minItems", 0) > 0 or bool(body.get("required"))
    return {"required": needed, "content": {"application/json": {"schema": body}}}


def _with_default(schema: dict[str, Any], p: inspect.Parameter) -> dict[str, Any]:
    if p.default is not _EMPTY and isinstance(p.default, (str, int, float, bool, type(None))):
        schema = {**schema, "default": p.default}
    return schema


def _query_fit(fn: Function, p: inspect.Parameter) -> bool:
    if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
        return False
    tp = fn.hints.get(p.name, _EMPTY)
    members = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    members = tuple(m for m in members if m is not type(None))
    return bool(members) and all(isinstance(m, type) and issubclass(m, _QUERY_SCALARS) for m in members)


def _query_parameter(fn: Function, p: inspect.Parameter, schema: Any) -> dict[str, Any]:
    tp = fn.hints.get(p.name, _EMPTY)
    # A query value is text: null cannot be sent, so ``int | None`` is described by its other members.
    members = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    present = [m for m in members if m is not type(None)]
    out = schema(present[0] if len(present) == 1 else typing.Union[tuple(present)])  # noqa: UP007
    if p.default is not None:  # absent from the query means None; "null" would not parse
        out = _with_default(out, p)
    return {"name": p.name, "in": "query", "required": p.default is _EMPTY, "schema": out,
            "description": type_text(tp)}


def _responses(result: dict[str, Any], *, post: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "the function's return value",
                                   "content": {"application/json": {"schema": result}}}}
    for status in (*ERRORS, *(POST_ERRORS if post else ())):
        out[status] = {"$ref": f"#/components/responses/{status}"}
    return out
