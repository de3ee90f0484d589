"""``GET /openapi.json``: an OpenAPI 3.1 document for ``/call``, checked by third-party tools.

openapi-spec-validator validates the document (demo app, and tests/apps/schemas with every supported
annotation); a correct call of every function gets a 200 whose body matches the operation's response
schema (jsonschema, 2020-12); schemathesis fuzzes every operation of tests/apps/schemas against a
running server — a fixed number of examples per operation and a fixed seed — and must find no 5xx, no
undocumented status and no response outside its schema.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import referencing
from openapi_spec_validator import validate

from conftest import APPS, DEMO_APP, Server
from schema_calls import DEMO, KINDS

pytestmark = pytest.mark.timeout(300)
ST = Path(sys.executable).parent / "st"
#: schemathesis 4.32 rewrites a 3.1 response schema's ``prefixItems`` to draft-4 ``items: [...]`` and then
#: refuses it as an invalid 3.1 schema; these two (a tuple and a NamedTuple result) are checked by
#: test_correct_calls_match_their_response_schemas instead.
ST_CANNOT_READ = ("/call/kinds/pair", "/call/kinds/named")


@pytest.fixture(scope="module")
def kinds() -> Iterator[Server]:
    with Server(APPS / "schemas", "--no-access-log", http=True) as srv:
        yield srv


def fetch(server: Server) -> dict[str, Any]:
    reply = httpx.get(server.http_url + "/openapi.json", timeout=10)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = reply.json()
    return doc


def test_demo_document_is_valid_openapi_31() -> None:
    with Server(DEMO_APP, http=True) as srv:
        doc = fetch(srv)
        assert httpx.get(srv.http_url + "/call/h/greet", params={"name": "bob", "times": "2"}).json() == {
            "result": "hello, bob. hello, bob."}
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {"/call/" + "/".join(m.rsplit(".", 1)) for m in DEMO}
    greet = doc["paths"]["/call/h/greet"]
    assert [p["name"] for p in greet["get"]["parameters"]] == ["name", "times"]
    assert greet["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["times"] == {
        "type": "integer", "default": 1}
    assert "get" not in doc["paths"]["/call/billing.invoice/total"]  # a list of dataclasses is no query string
    for status in ("400", "401", "404", "500", "503", "504", "415"):
        assert greet["post"]["responses"][status] == {"$ref": f"#/components/responses/{status}"}
    assert "security" not in doc


def test_every_annotation_is_valid_openapi_31(kinds: Server) -> None:
    doc = fetch(kinds)
    validate(doc)
    assert len(doc["paths"]) == len(KINDS)
    money = doc["paths"]["/call/kinds/money"]["get"]["parameters"][0]["schema"]
    assert money["type"] == "string" and "pattern" in money and "format" not in money


def body_for(operation: dict[str, Any], params: list[Any]) -> Any:
    """The POST body the operation describes: the keyword form when it is an object, else the array."""
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    if schema["type"] == "object":
        return dict(zip(schema["properties"], params, strict=False))
    return params


def test_correct_calls_match_their_response_schemas(kinds: Server) -> None:
    doc = fetch(kinds)
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        "urn:doc", referencing.Resource.from_contents(doc, referencing.jsonschema.DRAFT202012))
    with httpx.Client(base_url=kinds.http_url, timeout=10) as http:
        for method, params in KINDS.items():
            path = "/call/" + "/".join(method.rsplit(".", 1))
            operation = doc["paths"][path]["post"]
            reply = http.post(path, json=body_for(operation, params))
            assert reply.status_code == 200, (method, reply.text)
            schema = {"$ref": f"urn:doc#/paths/{path.replace('/', '~1')}/post/responses/200/content/"
                              "application~1json/schema"}
            jsonschema.Draft202012Validator(schema, registry=registry).validate(reply.json())


def test_with_a_token_the_document_says_so_and_needs_it(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with Server(APPS / "schemas", "--token-file", str(token), http=True) as srv:
        assert httpx.get(srv.http_url + "/openapi.json").status_code == 401
        doc = httpx.get(srv.http_url + "/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
    validate(doc)
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_schemathesis_finds_nothing(kinds: Server, tmp_path: Path) -> None:
    report = tmp_path / "events.ndjson"
    cmd = [str(ST), "run", kinds.http_url + "/openapi.json", "--checks",
           "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
           "--max-examples", "10", "--seed", "1", "--workers", "1", "--phases", "coverage,fuzzing",
           "--request-timeout", "10", "--no-color", "--report", "ndjson", "--report-ndjson-path", str(report)]
    for path in ST_CANNOT_READ:
        cmd += ["--exclude-path", path]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)  # its cache stays there
    summary = out.stdout[out.stdout.find("SUMMARY"):]
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", summary)
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert tested and cases, summary
    assert int(tested.group(1)) == sum(len(item) for path, item in fetch(kinds)["paths"].items()
                                       if path not in ST_CANNOT_READ)
    assert cases.group(1) == cases.group(2) and int(cases.group(1)) > 0
    print(json.dumps({"operations": int(tested.group(1)), "examples": int(cases.group(1)), "failures": 0}))
    assert kinds.proc.poll() is None  # still serving
