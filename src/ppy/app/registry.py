"""The immutable method table built from an app folder.

A :class:`Registry` is built once (and again on reload, then swapped in
atomically): importing every entry up front means discovery is complete, a
broken module is reported at start-up, and a call is one dict look-up.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ppy.app import loader
from ppy.app.function import Function
from ppy.errors import InternalError, MethodNotFound

log = logging.getLogger("ppy.app")


@dataclass(frozen=True)
class Registry:
    app_dir: Path
    functions: dict[str, Function]
    entries: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)  # entry -> "ExcType: message (file, line N)"
    package: loader.Package | None = None
    refused: frozenset[str] = frozenset()  # entries in ``failed`` refused by the loader (e.g. outside symlinks)

    @classmethod
    def build(cls, app_dir: Path, import_timeout: float | None = None) -> Registry:
        """Import every entry; one that raises anything or outlasts ``import_timeout`` is listed in ``failed``."""
        package = loader.Package(app_dir)
        functions: dict[str, Function] = {}
        failed: dict[str, str] = {}
        entries: list[str] = []
        refused: set[str] = set()
        for entry in loader.discover(app_dir):
            try:
                module = package.import_entry(entry, import_timeout)
                found = exposed(module)
            except loader.EntryError as exc:
                failed[entry] = str(exc)
                refused.add(entry)
                log.error("app entry %r refused: %s", entry, exc)
                continue
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failed[entry] = _describe_import_error(exc)
                log.error("app module %r failed to import: %s\n%s", entry, failed[entry], _traceback(exc))
                continue
            entries.append(entry)
            for name, fn in found:
                method = f"{entry}.{name}"
                functions[method] = Function.load(method, fn)
        return cls(Path(app_dir), functions, tuple(entries), failed, package, frozenset(refused))

    def lookup(self, method: str) -> Function:
        fn = self.functions.get(method)
        if fn is not None:
            return fn
        raise self.not_found(method)

    def not_found(self, method: str) -> Exception:
        entry, _, func = method.rpartition(".")
        if entry in self.refused:
            return MethodNotFound(f"method {method!r} not found: entry {entry!r} is refused because its file "
                                  "resolves outside the app folder (a symlink?); move the module into the app "
                                  "folder", {"entry": entry})
        if entry in self.failed:
            return InternalError(
                f"entry {entry!r} failed to import: {self.failed[entry]}; fix the module and restart "
                "the server (or run it with --reload)", {"entry": entry})
        if not entry or not loader.valid_entry(entry):
            return MethodNotFound(
                f"method {method!r} not found: use 'entry.func' where entry is a module of the app folder "
                "(dot-separated names, none starting with '_')")
        if entry not in self.entries:
            return MethodNotFound(f"method {method!r} not found: no module {entry!r} in the app folder")
        return MethodNotFound(
            f"method {method!r} not found: {entry!r} has no public function {func!r} "
            "(only functions defined in the module, not starting with '_', and in __all__ if it has one)")


def exposed(module: ModuleType) -> list[tuple[str, Callable[..., Any]]]:
    """Public functions *defined* in ``module`` (docs/app-folder.md), honouring ``__all__``.

    Reads the module's namespace (``vars``), never ``getattr``: a module-level ``__getattr__`` (PEP 562)
    is app code that may raise anything or compute lazily, and listing functions must not run it.
    """
    namespace = vars(module)
    names = namespace.get("__all__")
    if names is None:
        names = [n for n in namespace if not n.startswith("_")]
    elif not isinstance(names, (list, tuple)):
        raise TypeError(f"__all__ must be a list or tuple of names, not {type(names).__name__}")
    out: list[tuple[str, Callable[..., Any]]] = []
    for name in names:
        if not isinstance(name, str) or name.startswith("_"):
            continue
        obj = namespace.get(name)
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            out.append((name, obj))
    return out


def _describe_import_error(exc: BaseException) -> str:
    """``ExcType: message (file.py, line N)``: which error, and where in the app it happened."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        # str(SyntaxError) already ends with "(file, line N)" and would repeat it; use the bare message.
        return f"{type(exc).__name__}: {exc.msg} ({Path(exc.filename or '?').name}, line {exc.lineno})"
    where = ""
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        frame = tb[-1]
        where = f" ({Path(frame.filename).name}, line {frame.lineno})"
    try:
        text = str(exc)
    except BaseException:  # an exception whose __str__ raises must not stop the loading of the others
        text = "<its message cannot be shown: str() raised>"
    return f"{type(exc).__name__}: {text}{where}"


def _traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException:
        return f"(no traceback: formatting the {type(exc).__name__} failed)"
