"""Entries that failed to load (an import error, a file resolving outside the app folder) are kept out
of every listing a client reads — ``rpc.discover``, ``GET /openrpc.json``, ``GET /openapi.json`` —
and are reported to the operator instead: the start-up log, and ``ppy ls APP_DIR`` on stderr
(tests/test_cli.py; the console: tests/test_console_browser.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

import ppy
from conftest import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("failed")
    app = root / "app"
    app.mkdir()
    (app / "good.py").write_text("def ok(n: int) -> int:\n    return n\n")
    (app / "bad.py").write_text("def nope() -> int:\n    return 1\n\n\nimport not_a_module_anywhere\n")
    (root / "elsewhere.py").write_text("def leak() -> str:\n    return 'leaked'\n")
    (app / "outside.py").symlink_to(root / "elsewhere.py")
    with Server(app, http=True) as srv:
        yield srv


def assert_only_good(text: str) -> None:
    assert "good" in text
    for needle in ("bad", "nope", "outside", "leak", "elsewhere", "not_a_module", "import-errors"):
        assert needle not in text, f"{needle!r} in {text}"


def test_rpc_discover_lists_only_callable_functions(server: Server) -> None:
    with ppy.Client(server.url) as client:
        doc = client.call("rpc.discover")
    assert [m["name"] for m in doc["methods"]] == ["good.ok"]
    assert_only_good(json.dumps(doc))


@pytest.mark.parametrize("path", ["/openrpc.json", "/openapi.json"])
def test_http_documents_list_only_callable_functions(server: Server, path: str) -> None:
    reply = httpx.get(server.http_url + path, timeout=10)
    assert reply.status_code == 200
    assert_only_good(reply.text)


def test_failures_are_logged_at_start_up(server: Server) -> None:
    out = server.output()
    assert "ppy: warning: entry 'bad' failed to import: ModuleNotFoundError: No module named " \
           "'not_a_module_anywhere' (bad.py, line 5)" in out
    assert "ppy: warning: entry 'outside' failed to import: entry 'outside' resolves outside the app folder" in out


def test_calls_to_failed_entries_still_say_why(server: Server) -> None:
    with ppy.Client(server.url) as client:
        with pytest.raises(ppy.RemoteInternalError, match="entry 'bad' failed to import"):
            client.call("bad.nope")
        with pytest.raises(ppy.RemoteMethodNotFound, match="resolves outside the app folder"):
            client.call("outside.leak")
