"""``ppy ls``: the exposed functions as a table (from a server's discovery, or an app folder)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

#: A module that hangs at import is listed as failed after this many seconds (``serve --import-timeout``).
IMPORT_TIMEOUT = 30.0


def print_doc(doc: dict[str, Any], failed: dict[str, str] | None = None) -> int:
    """The callable functions on stdout; ``failed`` entries (entry -> why) apart from them, on stderr."""
    table = Table(title=doc.get("info", {}).get("title", "ppy"), show_lines=False)
    table.add_column("method", style="bold cyan", no_wrap=True)
    table.add_column("signature")
    table.add_column("summary", style="dim")
    for method in doc.get("methods", []):
        # Text(), not markup: "list[int]" would otherwise be read as a style tag and vanish.
        table.add_row(Text(method["name"]), Text(method.get("x-signature", "")), Text(method.get("summary", "")))
    Console().print(table)
    errors = Console(stderr=True)
    for entry, why in (failed or {}).items():
        errors.print(Text.assemble(("entry ", "red"), (repr(entry), "red"), (" failed to import: ", "red"), why))
    return 0


def print_local(app_dir: Path | None) -> int:
    from ppy import __version__
    from ppy.app.discover import document
    from ppy.app.registry import Registry
    from ppy.server.main import default_app_dir

    folder = app_dir or default_app_dir()
    if not Path(folder).is_dir():
        Console(stderr=True).print(Text(f"ppy ls: app folder {folder} does not exist; pass an existing APP_DIR"))
        return 1
    # Import errors are listed on stderr, one line each; the loader's tracebacks would only bury them.
    logging.getLogger("ppy.app").addHandler(logging.NullHandler())
    logging.getLogger("ppy.app").propagate = False
    registry = Registry.build(Path(folder), IMPORT_TIMEOUT)
    return print_doc(document(registry, __version__), registry.failed)
