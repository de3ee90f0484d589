"""Import app modules from the app folder, and nothing else (docs/app-folder.md).

Modules are imported under a private package (``ppy_app_<n>``) whose
``__path__`` is the app folder: an entry ``billing.invoice`` is the module
``ppy_app_0.billing.invoice``.  That keeps app modules from shadowing the
standard library (an app's ``json.py`` is not ``json``), lets app modules use
relative imports, and lets a reload build a fresh package beside the old one.

The app folder is also appended to ``sys.path`` so app modules can import
their siblings by plain name (``import helpers``), as they would when run
as scripts.  Such an import gets the *same* module object as the entry
(:class:`_SiblingFinder`): an app module is imported once, so its state
(a cache, a connection pool, a counter) is one, whichever way it is reached.
Entries from clients are *never* used to import anything before they pass
:func:`resolve`: a strict identifier pattern, then ``realpath`` containment
of every file involved.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import itertools
import os
import re
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ppy.wire.model import ENTRY_RE

_PART_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_counter = itertools.count()


class EntryError(Exception):
    """An entry that is not a loadable module of the app folder."""


class ImportTimeout(Exception):
    """An app module whose import did not finish in time (it is left running in a daemon thread)."""


def valid_entry(entry: str) -> bool:
    return bool(ENTRY_RE.match(entry))


def resolve(app_dir: Path, entry: str) -> Path:
    """The real path of ``entry``'s module file, which must lie inside ``app_dir``.

    Every package ``__init__.py`` on the way is checked too, because importing
    ``a.b`` runs ``a/__init__.py`` first.
    """
    if not valid_entry(entry):
        raise EntryError(f"{entry!r} is not a valid entry: use dot-separated names like 'billing.invoice'")
    root = Path(os.path.realpath(app_dir))
    parts = entry.split(".")
    here = root
    target: Path | None = None
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        module_file = here / f"{part}.py"
        package_dir = here / part
        init = package_dir / "__init__.py"
        # Python's own order: a package (folder with __init__.py) wins over a module of the same name,
        # so the file checked here is the file the import system will run.
        if package_dir.is_dir() and (init.exists() or not last or not module_file.is_file()):
            _inside(root, package_dir, entry)
            if init.exists():
                _inside(root, init, entry)
            target = init if last else None
        elif last and module_file.is_file():
            target = module_file
        else:
            raise EntryError(f"no module {entry!r} in the app folder {root}")
        here = package_dir
    if target is None or not target.exists():
        raise EntryError(f"{entry!r} is a folder without __init__.py, not a module; name a .py file")
    return _inside(root, target, entry)


def _inside(root: Path, path: Path, entry: str) -> Path:
    real = Path(os.path.realpath(path))
    if not _contains(root, real):
        raise EntryError(f"entry {entry!r} resolves outside the app folder ({real}); ppy refuses it")
    return real


def _contains(root: Path, real: Path) -> bool:
    return real == root or root in real.parents


def discover(app_dir: Path) -> Iterator[str]:
    """Every entry in the app folder: .py files and packages with public, valid names."""
    root = Path(os.path.realpath(app_dir))

    def walk(folder: Path, prefix: str, ancestors: frozenset[str]) -> Iterator[str]:
        try:
            children = sorted(folder.iterdir())
        except OSError:
            return
        for child in children:
            name = child.stem if child.suffix == ".py" else child.name
            if not _PART_RE.match(name):
                continue
            if child.is_file() and child.suffix == ".py":
                yield prefix + name
            elif child.is_dir():
                real = os.path.realpath(child)
                if real in ancestors:
                    continue  # a symlink back up the tree: following it would never end
                if not _contains(root, Path(real)):
                    yield prefix + name  # reported (and refused) by resolve, never descended into
                    continue
                if (child / "__init__.py").is_file():
                    yield prefix + name
                yield from walk(child, prefix + name + ".", ancestors | {real})

    yield from walk(root, "", frozenset({str(root)}))


class _Alias(importlib.abc.Loader):
    """Loads a plain name as the module already imported (or importable) under ``target``."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__  # the import system overwrites __spec__ with the alias's spec
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self._spec  # already executed under its own name: only undo that overwrite


class _SiblingFinder(importlib.abc.MetaPathFinder):
    """Sits just before ``PathFinder``.  A plain-name import that ``PathFinder`` would load from an app
    folder (``import helpers``, ``import billing.invoice``) becomes an alias of the package's module
    (``ppy_app_0.helpers``).  Everything ``PathFinder`` would find elsewhere first (the standard library,
    site-packages: the app folder is last on ``sys.path``) is left alone, so precedence is unchanged."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        top, dot, rest = fullname.partition(".")
        if dot:  # a submodule: alias it only below a package that is itself an alias
            parent = sys.modules.get(top)
            name = getattr(parent, "__name__", "")
            if parent is None or name == top or not name.startswith("ppy_app_"):
                return None
            return importlib.machinery.ModuleSpec(fullname, _Alias(f"{name}.{rest}"))
        spec = importlib.machinery.PathFinder.find_spec(fullname)
        if spec is None:
            return None
        for package in reversed(_packages):
            if _found_in(spec, package.app_dir):
                try:
                    resolve(package.app_dir, fullname)
                except EntryError:  # e.g. a symlink out of the folder: an ordinary module, as before
                    return None
                return importlib.machinery.ModuleSpec(fullname, _Alias(package.module_name(fullname)))
        return None


def _found_in(spec: importlib.machinery.ModuleSpec, app_dir: Path) -> bool:
    """Whether ``PathFinder`` found ``spec`` directly in ``app_dir`` (a module, package or namespace)."""
    root = str(app_dir)
    if spec.has_location and spec.origin:
        where = os.path.dirname(spec.origin)
        if spec.submodule_search_locations is not None:  # a package: app_dir/name/__init__.py
            where = os.path.dirname(where)
        return where == root
    locations = list(spec.submodule_search_locations or [])  # a namespace package: app_dir/name
    return bool(locations) and all(os.path.dirname(os.path.normpath(p)) == root for p in locations)


_packages: list[Package] = []  # live packages, oldest first (a reload adds one, then unloads the old)


def _install_finder() -> None:
    if any(isinstance(f, _SiblingFinder) for f in sys.meta_path):
        return
    index = sys.meta_path.index(importlib.machinery.PathFinder) \
        if importlib.machinery.PathFinder in sys.meta_path else len(sys.meta_path)
    sys.meta_path.insert(index, _SiblingFinder())


class Package:
    """A private package rooted at the app folder; one per (re)load."""

    def __init__(self, app_dir: Path) -> None:
        self.app_dir = Path(os.path.realpath(app_dir))
        self.name = f"ppy_app_{next(_counter)}"
        pkg = types.ModuleType(self.name)
        pkg.__path__ = [str(self.app_dir)]
        pkg.__package__ = self.name
        pkg.__file__ = None
        sys.modules[self.name] = pkg
        if str(self.app_dir) not in sys.path:
            sys.path.append(str(self.app_dir))
        _packages.append(self)
        _install_finder()

    def module_name(self, entry: str) -> str:
        return f"{self.name}.{entry}"

    def import_entry(self, entry: str, timeout: float | None = None) -> types.ModuleType:
        """Import a resolved entry; exceptions from the module (any ``BaseException``) propagate to the caller.

        With ``timeout``, the import runs in a daemon thread and :class:`ImportTimeout` is raised if it
        has not finished by then: a module that hangs at import (a network call, a lock, a loop) costs
        its own entry, not the server's start, a reload or the shutdown.  The hung thread is left behind
        (Python cannot stop it); being a daemon, it never holds the process's exit.
        """
        resolve(self.app_dir, entry)
        name = self.module_name(entry)
        if timeout is None:
            return importlib.import_module(name)
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(importlib.import_module(name))
            except BaseException as exc:  # SystemExit, KeyboardInterrupt from module code: the caller decides
                outcome.append(exc)

        thread = threading.Thread(target=run, name=f"ppy-import-{entry}", daemon=True)
        thread.start()
        thread.join(timeout)
        if not outcome:
            raise ImportTimeout(f"importing {entry!r} did not finish within {timeout:g} s (--import-timeout); "
                                "look for module-level code that waits (network, locks, input()) and move it "
                                "into a function")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        module: types.ModuleType = outcome[0]
        return module

    def unload(self) -> None:
        """Drop this package's modules (after a reload swapped in a new one)."""
        prefix = self.name + "."
        for name in [n for n in sys.modules if n == self.name or n.startswith(prefix)]:
            del sys.modules[name]
        if self in _packages:
            _packages.remove(self)
