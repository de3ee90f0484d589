"""``POST /rpc`` and ``GET``/``POST /call/{entry}/{func}``: HTTP bodies in, the one dispatcher, HTTP replies out.

Decoding is :func:`ppy.wire.jsonrpc.parse` (the lines dialect's codec),
running is :meth:`Dispatcher.call` with dialect ``Dialect.HTTP``, and errors carry
their own ``http_status`` — so HTTP cannot drift from TCP in semantics.

Query strings (``GET /call``) are text; each value becomes a keyword
argument this way, then the parameter's annotation converts it as for any
JSON value (``"2"`` → ``2`` for ``int``):

* a parameter annotated ``str`` (or ``str | None``) gets the text as is;
* a scalar annotation (``int``, ``float``, ``bool``, ``date``, ``Decimal`` ...)
  gets the text and the annotation parses it;
* anything else (lists, dicts, dataclasses, ``Any``, no annotation) gets the
  value parsed as JSON where it parses, else the text (as ``ppy call`` does);
* a repeated key (``?tag=a&tag=b``) gives a list of those values.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import enum
import types
import typing
import uuid
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from ppy.errors import InvalidRequest, Overloaded, PpyError
from ppy.server.http.edge import (
    BrowserRule,
    Refusal,
    error_body,
    header,
    no_content,
    preflight,
    read_body,
    reply,
    require_json,
    require_token,
    tracked,
    with_cors,
)
from ppy.server.observe.metrics import Metrics
from ppy.server.state import ServerState
from ppy.wire import jsonrpc, jsonvalue
from ppy.wire.model import Call, Dialect

#: Methods each call route answers (``HEAD`` is not one of them: it would run the function).
RPC_METHODS = b"POST, OPTIONS"
CALL_METHODS = b"GET, POST, OPTIONS"
MAX_QUERY_FIELDS = 1000
#: A refused ``/rpc`` body up to this size is still read, to answer with its ``id``.
REFUSED_BODY_LIMIT = 64 * 1024

SCALARS: tuple[type, ...] = (int, float, bool, decimal.Decimal, datetime.date, datetime.datetime, datetime.time,
                             datetime.timedelta, uuid.UUID, enum.Enum)


def draining_error() -> Overloaded:
    return Overloaded("server is shutting down and takes no new calls; retry on another instance")


class HttpCalls:
    """The two call routes as raw ASGI apps (``rpc`` and ``call``)."""

    def __init__(self, state: ServerState, metrics: Metrics) -> None:
        self.state = state
        self.config = state.config
        self.dispatcher = state.dispatcher
        self.metrics = metrics
        self.browsers = BrowserRule(state.config.cors_origins)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        require_json(scope)
        return await self._read(scope, receive)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        try:
            return await read_body(scope, receive, self.config.max_frame_bytes, self.config.request_timeout)
        except Refusal as exc:
            if exc.status == 413:
                self.metrics.trip("max_frame_bytes")
            elif exc.status == 408:
                self.metrics.trip("request_timeout")
            raise

    # -- POST /rpc -------------------------------------------------------------

    async def rpc(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method != "POST":
            if method == "OPTIONS":
                await preflight(scope, send, self.browsers, RPC_METHODS)
                return
            error = InvalidRequest(f"{method} is not allowed on /rpc: send the JSON-RPC request with POST")
            await reply(send, 405, jsonrpc.encode_error(None, error), headers=((b"allow", RPC_METHODS),))
            return
        body = None
        try:
            origin = self.browsers.check(scope)
            if origin is not None:
                send = with_cors(send, origin, RPC_METHODS)
            require_token(scope, self.dispatcher)
            require_json(scope)
            body = b""  # from here on, a refusal comes from reading the body (or the drain, after it)
            body = await self._read(scope, receive)
            if self.state.draining:
                raise Refusal(503, draining_error())
        except Refusal as exc:
            await self.refuse_rpc(scope, receive, send, exc, body)
            return
        config = self.config
        items, batch = jsonrpc.parse(body, max_depth=config.max_depth, max_batch=config.max_batch)
        with tracked(self.state):
            if batch:
                replies = await asyncio.gather(*(self.rpc_item(item) for item in items))
                out = [r for r in replies if r is not None]
                answer = jsonrpc.encode_batch(out) if out else None
            else:
                answer = await self.rpc_item(items[0])
        if answer is None:
            await no_content(send)
        else:
            await reply(send, 200, answer)

    async def refuse_rpc(self, scope: Scope, receive: Receive, send: Send, exc: Refusal,
                         body: bytes | None = None) -> None:
        """A refused ``/rpc`` request still gets a JSON-RPC response, with the request's ``id`` when the
        body is (or can still be) read: small enough, and within the request deadline.  ``body`` is
        None when nothing tried to read it yet, ``b""`` when reading it is what failed."""
        if body is None:  # refused before the body was read: read it now if it is small
            declared = header(scope, b"content-length")
            limit = min(REFUSED_BODY_LIMIT, self.config.max_frame_bytes)
            if declared is not None and declared.isdigit() and int(declared) <= limit:
                with contextlib.suppress(Refusal):
                    body = await read_body(scope, receive, limit, self.config.request_timeout)
        rid = None
        if body:
            items, batch = jsonrpc.parse(body, max_depth=self.config.max_depth, max_batch=self.config.max_batch)
            rid = None if batch else items[0].id
        await reply(send, exc.status, jsonrpc.encode_error(rid, exc.error), headers=exc.headers)

    async def rpc_item(self, item: jsonrpc.Item) -> bytes | None:
        if isinstance(item, jsonrpc.Rejected):
            return jsonrpc.encode_error(item.id, item.error)
        try:
            result = await self.dispatcher.call(item, Dialect.HTTP, True, jsonvalue.encode)
        except PpyError as exc:
            return None if item.notify else jsonrpc.encode_error(item.id, exc)
        return None if item.notify else jsonrpc.encode_result(item.id, result)

    # -- GET/POST /call/{entry}/{func} -------------------------------------------------

    async def admit(self, scope: Scope, receive: Receive, send: Send, route: str) -> tuple[str, Any, Send] | None:
        """What ``/call`` and ``/stream`` check before anything runs: the verb (CORS preflights answered,
        HEAD and the others 405), the browser rule, the token, the arguments and the drain.  None when
        that already answered (a refusal or a preflight); else the method, its arguments and the
        ``send`` to reply with (CORS headers added for a listed origin)."""
        path = scope["path_params"]
        method = f"{path['entry']}.{path['func']}"
        verb = scope["method"]
        try:
            if verb not in ("GET", "POST"):
                if verb == "OPTIONS":
                    await preflight(scope, send, self.browsers, CALL_METHODS)
                    return None
                raise Refusal(405, InvalidRequest(  # HEAD too: a link checker must not run the function
                    f"{verb} is not allowed on {route}: use GET (query arguments) or POST (JSON body)"),
                    ((b"allow", CALL_METHODS),))
            origin = self.browsers.check(scope)  # another site's page may not run functions
            if origin is not None:
                send = with_cors(send, origin, CALL_METHODS)
            require_token(scope, self.dispatcher)
            if verb == "POST":
                params = self._post_params(await self._body(scope, receive))
            else:
                params = self._query_params(method, scope.get("query_string", b""))
            if self.state.draining:
                raise Refusal(503, draining_error())
        except Refusal as exc:
            await reply(send, exc.status, error_body(exc.error), headers=exc.headers)
            return None
        except PpyError as exc:
            await reply(send, exc.http_status, error_body(exc))
            return None
        return method, params, send

    async def call(self, scope: Scope, receive: Receive, send: Send) -> None:
        admitted = await self.admit(scope, receive, send, "/call")
        if admitted is None:
            return
        method, params, send = admitted
        with tracked(self.state):
            try:
                result = await self.dispatcher.call(Call(method, params), Dialect.HTTP, True, jsonvalue.encode)
            except PpyError as exc:
                status, body = exc.http_status, error_body(exc)
            else:
                status, body = 200, b'{"result":' + result + b"}"
        await reply(send, status, body)

    def _post_params(self, body: bytes) -> list[Any] | dict[str, Any]:
        if not body.strip():
            return []
        value = jsonvalue.decode(body, self.config.max_depth)
        if not isinstance(value, (list, dict)):
            raise InvalidRequest("POST /call body must be a JSON array (positional) or object (keyword "
                                 f"arguments), got {type(value).__name__}; send e.g. {{\"name\": \"bob\"}}")
        return value

    def _query_params(self, method: str, query: bytes) -> dict[str, Any]:
        fn = self.dispatcher.registry.functions.get(method)
        grouped: dict[str, list[str]] = {}
        try:
            fields = parse_qsl(query.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict",
                               max_num_fields=MAX_QUERY_FIELDS)
        except UnicodeDecodeError:
            raise InvalidRequest("query string is not valid UTF-8: percent-encode the UTF-8 bytes of each "
                                 "value (e.g. %C3%A9 for é)") from None
        except ValueError:
            raise InvalidRequest(f"more than {MAX_QUERY_FIELDS} query fields; send many arguments with POST "
                                 "/call and a JSON body", {"max_query_fields": MAX_QUERY_FIELDS}) from None
        for key, value in fields:
            grouped.setdefault(key, []).append(value)
        params: dict[str, Any] = {}
        for name, values in grouped.items():
            tp = fn.hints.get(name) if fn is not None else None
            if _is_sequence(tp) and not (len(values) == 1 and values[0].lstrip().startswith("[")):
                item = _element(tp)
                params[name] = [self._query_value(item, v) for v in values]  # ?tag=a&tag=b
            elif len(values) == 1:
                params[name] = self._query_value(tp, values[0])
            else:
                params[name] = [self._query_value(None, v) for v in values]
        return params

    def _query_value(self, tp: Any, text: str) -> Any:
        if _is_text(tp) or _is_scalar(tp):
            return text  # the annotation parses it
        try:
            return jsonvalue.decode(text, self.config.max_depth)
        except PpyError:
            return text


def _members(tp: Any) -> tuple[Any, ...]:
    """The types of a union without None (``int | None`` → ``(int,)``), or the type itself."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(tp) if a is not type(None))
    return (tp,)


def _is_text(tp: Any) -> bool:
    return tp is not None and all(m is str for m in _members(tp))


def _is_scalar(tp: Any) -> bool:
    if tp is None:
        return False
    members = _members(tp)
    return all(isinstance(m, type) and issubclass(m, SCALARS) for m in members)


def _element(tp: Any) -> Any:
    args = typing.get_args(_members(tp)[0])
    return args[0] if args else None


def _is_sequence(tp: Any) -> bool:
    if tp is None:
        return False
    return all(typing.get_origin(m) in (list, set, frozenset, tuple) or m in (list, set, frozenset, tuple)
               for m in _members(tp))
