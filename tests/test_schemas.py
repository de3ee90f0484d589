"""Discovery schemas as third-party tools read them: @open-rpc/schema-utils-js and ajv (strict, ajv-formats).

The npm packages are installed by ``make js-deps`` (part of ``make test``) into tests/js/node_modules.
For each app (the demo app, and tests/apps/schemas with every supported annotation) the document comes
from a running server's ``GET /openrpc.json``; every method gets a correct call (tests/schema_calls.py),
whose actual result must match the method's result schema.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

import ppy
from conftest import APPS, DEMO_APP, IN_CI, ROOT, Server, require_tool
from schema_calls import DEMO, KINDS

JS = ROOT / "tests" / "js"


def run_checker(tmp_path: Path, app: Path, calls: dict[str, Any]) -> dict[str, Any]:
    node = require_tool("node")
    if not (JS / "node_modules" / "@open-rpc" / "schema-utils-js").is_dir():
        message = "the npm packages are not installed: run `make js-deps`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with Server(app, http=True) as srv:
        document = httpx.get(srv.http_url + "/openrpc.json", timeout=10).json()
        with ppy.Client(srv.url, timeout=10) as client:
            results = {method: client.call(method, *params) for method, params in calls.items()
                       if method in {m["name"] for m in document["methods"]}}
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"document": document, "calls": calls, "results": results}))
    out = subprocess.run([node, str(JS / "check_openrpc.js"), str(data)], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout, out.stderr
    report: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    assert report["errors"] == [], "\n".join(report["errors"])
    assert out.returncode == 0, out.stderr
    assert report["methods"] == len(document["methods"]) == len(calls)
    return report


def test_demo_app_schemas_pass_openrpc_tools_and_ajv_strict(tmp_path: Path) -> None:
    run_checker(tmp_path, DEMO_APP, DEMO)


def test_every_annotation_passes_openrpc_tools_and_ajv_strict(tmp_path: Path) -> None:
    run_checker(tmp_path, APPS / "schemas", KINDS)
