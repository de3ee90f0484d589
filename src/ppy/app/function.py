"""One exposed function: its signature, parameter converters and how to bind a call.

Everything that can be worked out once (signature, resolved annotations,
whether msgspec can convert each one) is, at load time, so a call only binds
and converts.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ppy.errors import InvalidParams
from ppy.wire.model import Params

_EMPTY = inspect.Parameter.empty


def _convertible(tp: Any) -> bool:
    if tp is _EMPTY or tp is Any or tp is object:
        return False
    try:
        msgspec.inspect.type_info(tp)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(slots=True)
class Function:
    method: str
    fn: Callable[..., Any]
    is_async: bool
    signature: inspect.Signature
    hints: dict[str, Any]
    converters: dict[str, Any] = field(default_factory=dict)  # param name -> type to convert to
    no_params: bool = False  # takes no arguments at all: skip binding
    # A generator or async generator function: its items stream (ppy.app.streaming, docs/streaming.md).
    streams: bool = False

    @classmethod
    def load(cls, method: str, fn: Callable[..., Any]) -> Function:
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # an unresolvable forward reference: fall back to what is concrete
            hints = {k: v for k, v in getattr(fn, "__annotations__", {}).items() if not isinstance(v, str)}
        converters = {
            name: hints[name] for name in sig.parameters if name in hints and _convertible(hints[name])
        }
        return cls(method, fn, inspect.iscoroutinefunction(fn), sig, hints, converters,
                   no_params=not sig.parameters,
                   streams=inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn))

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    @property
    def summary(self) -> str:
        return self.doc.strip().split("\n\n")[0].replace("\n", " ")

    def describe(self) -> str:
        """``greet(name: str = 'world', times: int = 1) -> str``, for error messages and ``ppy ls``."""
        parts = []
        star = False
        params = list(self.signature.parameters.values())
        for i, p in enumerate(params):
            name = p.name
            if p.kind is p.KEYWORD_ONLY and not star:
                parts.append("*")
                star = True
            stars = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
            text = stars + name
            annotated = name in self.hints or p.annotation is not _EMPTY
            if annotated:
                text += ": " + type_text(self.hints.get(name, p.annotation))
            if p.default is not _EMPTY:
                text += f" = {p.default!r}" if annotated else f"={p.default!r}"  # PEP 8 spacing
            star = star or p.kind is p.VAR_POSITIONAL
            parts.append(text)
            if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY):
                parts.append("/")
        ret = self.hints.get("return", self.signature.return_annotation)
        arrow = "" if ret is _EMPTY else " -> " + type_text(ret)
        return f"{self.method.rpartition('.')[2]}({', '.join(parts)}){arrow}"

    def bind(self, params: Params) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Bind JSON params to the signature and convert annotated values, or raise InvalidParams."""
        if self.no_params:
            if params:
                raise InvalidParams(f"{self.method} takes no parameters, got {len(params)}; call it with []",
                                    {"signature": self.describe()})
            return (), {}
        try:
            if isinstance(params, dict):
                bound = self.signature.bind(**params)
            else:
                bound = self.signature.bind(*params)
        except TypeError as exc:
            raise InvalidParams(f"{self.method}: {exc}; signature is {self.describe()}",
                                {"signature": self.describe()}) from None
        return self._converted(bound)

    def rebind(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Bind values that :meth:`bind` already accepted, after a JSON round trip (``--isolate`` workers).

        Converting a converted value's JSON form gives the same value back (a dataclass from its
        object, a datetime from its ISO string), so the worker sees what in-process code would.
        """
        return self._converted(self.signature.bind(*args, **kwargs))

    def _converted(self, bound: inspect.BoundArguments) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.converters:
            arguments = bound.arguments
            for name, tp in self.converters.items():
                if name not in arguments:
                    continue
                kind = self.signature.parameters[name].kind
                value = arguments[name]
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    arguments[name] = tuple(_convert(self.method, name, v, tp) for v in value)
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    arguments[name] = {k: _convert(self.method, name, v, tp) for k, v in value.items()}
                else:
                    arguments[name] = _convert(self.method, name, value, tp)
        return bound.args, bound.kwargs


def _convert(method: str, name: str, value: Any, tp: Any) -> Any:
    try:
        return msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidParams(f"parameter {name!r} of {method}: {exc}; send a value of type {type_text(tp)}",
                            {"param": name}) from None


def type_text(tp: Any) -> str:
    """An annotation as a person writes it: ``list[Line]``, ``int | None``, ``Any``."""
    if tp is _EMPTY or tp is Any:
        return "Any"
    if tp is None or tp is type(None):
        return "None"
    if isinstance(tp, str):
        return tp
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if args and origin is not None:
        if origin in (typing.Union, types.UnionType):
            return " | ".join(type_text(a) for a in args)
        name = getattr(origin, "__name__", str(origin).replace("typing.", ""))
        return f"{name}[{', '.join(type_text(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))
