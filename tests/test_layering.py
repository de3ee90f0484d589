"""The layering of docs/architecture.md, enforced on the source with ``ast``.

    errors, config, logs  <-  wire  <-  app  <-  run  <-  server  <-  cli, ls, stubs, bench_cli, __main__
                              wire  <-  client  <-  the package root (public API) and the CLI

Each layer imports only the layers on its left (and itself).  Every import
counts, also the ones inside functions and under ``TYPE_CHECKING``: a lazy
import is still a dependency.  The codecs (``ppy.wire``) import neither
``asyncio`` nor ``socket`` (nor ``ppy.config``: they get only the numbers they
need), and the bundled demo app imports nothing from ppy (user code stays plain).
A new module must be placed in a layer here before the test passes.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "ppy"

FOUNDATION = {"errors", "config", "logs"}
#: layer -> the layers it may import (besides itself).  Keys are the first
#: component under ``ppy`` (a subpackage or a top-level module).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "logs": set(),  # a leaf: logging set-up must not drag the server in
    "wire": {"errors"},
    "app": {"errors", "config", "wire"},
    "run": {"errors", "config", "logs", "wire", "app"},
    "server": {"errors", "config", "logs", "wire", "app", "run"},
    # The clients share the codecs and nothing of the server.
    "client": {"errors", "wire"},
    # Bundled user code: plain Python, imports nothing from ppy.
    "demo_app": set(),
}
#: The top: the CLI and its subcommand modules (``ppy ls``, ``ppy stubs``, ``ppy bench``) and the
#: package root; they may import anything, nothing below may import them.
TOP = {"cli", "ls", "stubs", "bench_cli", "__main__", "__init__"}
#: ``from ppy import __version__`` only reads a constant of the root package,
#: which Python has imported before any submodule anyway.
ROOT_NAMES_ANYONE_MAY_IMPORT = {"__version__"}
#: Never in the sans-I/O codecs.
IO_MODULES = {"asyncio", "socket", "selectors", "ssl", "uvloop", "anyio", "trio"}


def layer_of(module: str) -> str:
    """'ppy.server.tcp' -> 'server'; 'ppy.cli' -> 'cli'; 'ppy' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def is_package(module: str) -> bool:
    return (SRC / module.replace(".", "/") / "__init__.py").exists()


def is_module(module: str) -> bool:
    path = SRC / module.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones resolved; ``from ppy import x``
    resolves to ``ppy.x`` when x is a submodule, else to ``ppy`` (or ``ppy:name`` for the allowed names)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if base.startswith("ppy") and is_module(sub):
                    found.append((node.lineno, sub))
                elif base == "ppy" and alias.name in ROOT_NAMES_ANYONE_MAY_IMPORT:
                    found.append((node.lineno, f"ppy:{alias.name}"))
                else:
                    found.append((node.lineno, base))
    return found


def test_every_module_is_placed_in_a_layer() -> None:
    unplaced = sorted({layer_of(module_name(p)) for p in source_files()} - set(ALLOWED) - TOP)
    assert not unplaced, f"place these in ALLOWED or TOP of tests/test_layering.py: {unplaced}"


def violations() -> list[str]:
    found = []
    for path in source_files():
        me = module_name(path)
        mine = layer_of(me)
        if mine in TOP:
            continue
        for line, target in imports_of(path):
            if target.startswith("ppy:") or not (target == "ppy" or target.startswith("ppy.")):
                continue
            theirs = layer_of(target)
            if theirs != mine and theirs not in ALLOWED.get(mine, set()):
                found.append(f"{path.relative_to(SRC)}:{line}: {me} ({mine}) imports {target} ({theirs})")
    return found


def test_each_layer_imports_only_the_layers_left_of_it() -> None:
    assert violations() == []


def test_the_codecs_import_no_io_and_no_config() -> None:
    bad = []
    for path in sorted((PKG / "wire").rglob("*.py")):
        for line, target in imports_of(path):
            if target.split(".")[0] in IO_MODULES or target == "ppy.config":
                bad.append(f"{path.relative_to(SRC)}:{line}: {target}")
    assert bad == []


def test_the_codecs_load_no_io_module_at_run_time() -> None:
    """Transitively too (msgspec and all): import ppy.wire without the package root's client imports."""
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('ppy'); pkg.__path__ = [{str(PKG)!r}]; sys.modules['ppy'] = pkg\n"
        "import ppy.wire.legacy, ppy.wire.lines, ppy.wire.jsonrpc, ppy.wire.jsonvalue, ppy.wire.sniff\n"
        "import ppy.wire.model\n"
        f"print(sorted(m for m in {sorted(IO_MODULES)!r} + ['ppy.config'] if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# -- the checker itself, so a broken resolver cannot pass everything --------------------------


@pytest.mark.parametrize(("source", "where", "expected"), [
    ("from ppy.server import tcp", "wire/x.py", "ppy.server.tcp"),
    ("from ..server.state import ServerState", "wire/x.py", "ppy.server.state"),
    ("from . import jsonvalue", "wire/x.py", "ppy.wire.jsonvalue"),
    ("import ppy.app.dispatch", "wire/x.py", "ppy.app.dispatch"),
    ("from ppy import config as cfg", "server/x.py", "ppy.config"),
    ("from ppy import __version__", "server/x.py", "ppy:__version__"),
    ("from ppy import Client", "server/x.py", "ppy"),
    ("def f():\n    from ppy.cli import main", "app/x.py", "ppy.cli"),
])
def test_import_resolution(source: str, where: str, expected: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake_src = tmp_path / "src"
    for d in ("wire", "server", "app"):
        (fake_src / "ppy" / d).mkdir(parents=True)
        (fake_src / "ppy" / d / "__init__.py").write_text("")
    for f in ("server/tcp.py", "server/state.py", "wire/jsonvalue.py", "app/dispatch.py", "config.py", "cli.py",
              "__init__.py"):
        (fake_src / "ppy" / f).write_text("")
    path = fake_src / "ppy" / where
    path.write_text(source + "\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake_src)
    assert [t for _, t in imports_of(path)] == [expected]


def test_a_violation_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pkg = tmp_path / "src" / "ppy"
    (fake_pkg / "wire").mkdir(parents=True)
    (fake_pkg / "server").mkdir()
    for f in ("__init__.py", "wire/__init__.py", "server/__init__.py", "server/tcp.py"):
        (fake_pkg / f).write_text("")
    (fake_pkg / "wire" / "codec.py").write_text("from ppy.server import tcp\nimport asyncio\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "src")
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake_pkg)
    assert violations() == ["ppy/wire/codec.py:1: ppy.wire.codec (wire) imports ppy.server.tcp (server)"]
    with pytest.raises(AssertionError):
        test_the_codecs_import_no_io_and_no_config()


def module_graph() -> dict[str, set[str]]:
    """module -> the ppy modules it imports (every import, also inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in source_files():
        me = module_name(path)
        graph[me] = {target for _, target in imports_of(path)
                     if (target == "ppy" or target.startswith("ppy.")) and target != me}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_between_modules() -> None:
    graph = module_graph()
    graph.pop("ppy", None)  # the package root loads names lazily (PEP 562) and is imported by everything
    for targets in graph.values():
        targets.discard("ppy")
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def private_imports() -> list[str]:
    """``from ppy.x import _name`` where ``_name`` is not a module, from outside ``ppy.x``'s own package."""
    found = []
    for path in source_files():
        me = module_name(path)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:  # relative: resolved like imports_of does
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
            if not base.startswith("ppy"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") \
                        and not is_module(f"{base}.{alias.name}") and base.rpartition(".")[0] != me.rpartition(".")[0]:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {me} imports {base}.{alias.name}")
    return found


def test_no_private_name_is_imported_from_another_package() -> None:
    assert private_imports() == []


def test_the_tcp_and_http_front_ends_never_import_each_other() -> None:
    bad = [f"{me} imports {target}" for me, targets in module_graph().items() for target in targets
           for a, b in (("ppy.server.tcp", "ppy.server.http"), ("ppy.server.http", "ppy.server.tcp"))
           if (me == a or me.startswith(a + ".")) and (target == b or target.startswith(b + "."))]
    assert bad == []


def test_a_private_import_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pkg = tmp_path / "src" / "ppy"
    for d in ("run", "server/http"):
        (fake_pkg / d).mkdir(parents=True)
    for f in ("__init__.py", "run/__init__.py", "run/threads.py", "server/__init__.py", "server/http/__init__.py",
              "server/http/own.py"):
        (fake_pkg / f).write_text("")
    (fake_pkg / "server" / "http" / "app.py").write_text(
        "from ppy.run.threads import _Rest\nfrom ...run.threads import _Lane\n"
        "from ppy.server.http.own import _mine\nfrom . import own\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "src")
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake_pkg)
    assert private_imports() == [
        "ppy/server/http/app.py:1: ppy.server.http.app imports ppy.run.threads._Rest",
        "ppy/server/http/app.py:2: ppy.server.http.app imports ppy.run.threads._Lane",
    ]
