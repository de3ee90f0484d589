"""The structure rules measured from the source (the layering, cycles and private imports are in
tests/test_layering.py):

- the repository stands on its own: no citation of a document it does not hold (a product
  specification's sections, design notes, a sibling ``shared`` folder): the rule a citation pointed
  to is stated in docs/ instead; and every page of docs/ it names exists;
- ``src/ppy/server/`` holds at most 8 modules directly (the rest lives in its subpackages, grouped by
  front end or job);
- no module of ``src/ppy`` is longer than 450 lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "ppy"
#: Where a user or a maintainer reads: every text file under these (and the top-level files).
SCANNED = ("src", "tests", "docs", "clients", "bench", "examples", "scripts", ".ci",
           "README.md", "BENCHMARKS.md", "Makefile", "pyproject.toml")
#: Installed or generated trees: not ours to check.
SKIPPED_DIRS = {"node_modules", "vendor", "build", "__pycache__", ".venv", ".pytest_cache", ".mypy_cache"}
#: Written in pieces so that this file does not match itself.
CITATION = re.compile("|".join([
    r"\bSPEC\b(\.md)?\s*§",
    r"§\s*\d",
    r"\bSPEC\.md\b",
    "DESIGN" + r"[-_ ]NOTES",
    r"\.\./" + "shared",
    "/work/" + "shared",
]))
#: A page of the repository's own docs named in a text (checked to exist).
DOC_LINK = re.compile(r"\bdocs/[\w.-]+\.md\b")
MAX_SERVER_MODULES = 8
MAX_MODULE_LINES = 450


def text_files(root: Path = ROOT) -> list[Path]:
    found: list[Path] = []
    for name in SCANNED:
        top = root / name
        if top.is_file():
            found.append(top)
            continue
        for path in sorted(top.rglob("*")):
            if path.is_file() and not SKIPPED_DIRS.intersection(path.relative_to(root).parts):
                found.append(path)
    return found


def text_lines(root: Path = ROOT) -> Iterator[tuple[Path, int, str]]:
    """(path, line number, line) for every line of every text file scanned (images etc. skipped)."""
    for path in text_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # images, compiled files
        for number, line in enumerate(text.splitlines(), 1):
            yield path, number, line


def citations(root: Path = ROOT) -> list[str]:
    """``path:line: text`` for every line that cites a document the repository does not hold."""
    return [f"{path.relative_to(root)}:{number}: {line.strip()[:100]}"
            for path, number, line in text_lines(root) if CITATION.search(line)]


def missing_docs(root: Path = ROOT) -> list[str]:
    """``path:line: page`` for every page of docs/ named in a text that the repository lacks."""
    return [f"{path.relative_to(root)}:{number}: {name}"
            for path, number, line in text_lines(root) for name in DOC_LINK.findall(line)
            if not (root / name).is_file()]


def server_modules(pkg: Path = PKG) -> list[str]:
    return sorted(p.name for p in (pkg / "server").glob("*.py"))


def long_modules(pkg: Path = PKG) -> list[str]:
    found = []
    for path in sorted(pkg.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(pkg.parent)}: {lines} lines")
    return found


def test_no_citation_of_a_document_the_repository_does_not_hold() -> None:
    assert citations() == []


def test_every_docs_page_named_exists() -> None:
    assert missing_docs() == [], "name the page that states the rule, or write it"


def test_the_server_package_holds_at_most_8_modules_directly() -> None:
    modules = server_modules()
    assert len(modules) <= MAX_SERVER_MODULES, f"move one into a subpackage of src/ppy/server/: {modules}"


def test_no_module_is_longer_than_450_lines() -> None:
    assert long_modules() == [], "split the module: one job per module"


# -- the checks themselves, so that a broken scan cannot pass everything ---------------------------


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    for d in ("src/ppy/server", "docs", "tests", "clients/php/vendor"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "docs" / "a.md").write_text("fine\nas " + "SPEC" + " \N{SECTION SIGN} 4.2 says\n", encoding="utf-8")
    (tmp_path / "tests" / "t.py").write_text("# see " + "DESIGN" + "-NOTES\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("[x](../" + "shared/x.md)\n", encoding="utf-8")
    (tmp_path / "clients/php/vendor/x.php").write_text("SPEC" + " \N{SECTION SIGN} 1\n", encoding="utf-8")  # skipped
    (tmp_path / "docs" / "img.png").write_bytes(b"\x89PNG\xff\xfe")
    assert sorted(citations(tmp_path)) == [
        "README.md:1: [x](../" + "shared/x.md)",
        "docs" "/a.md:2: as " + "SPEC" + " \N{SECTION SIGN} 4.2 says",
        "tests/t.py:1: # see " + "DESIGN" + "-NOTES",
    ]
    (tmp_path / "tests" / "u.py").write_text("# see docs" "/a.md and docs" "/gone.md\n", encoding="utf-8")
    assert missing_docs(tmp_path) == ["tests/u.py:1: docs" "/gone.md"]
    pkg = tmp_path / "src" / "ppy"
    for i in range(9):
        (pkg / "server" / f"m{i}.py").write_text("x = 1\n" * (451 if i == 0 else 3))
    assert len(server_modules(pkg)) == 9
    assert long_modules(pkg) == ["ppy/server/m0.py: 451 lines"]
