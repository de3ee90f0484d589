"""Token mode over HTTP: Authorization: Bearer on every route but /healthz and /readyz."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import APPS, Server

pytestmark = pytest.mark.timeout(60)
TOKEN = "tok-3f9a1c"
GOOD = {"Authorization": f"Bearer {TOKEN}"}
RPC = b'{"jsonrpc":"2.0","method":"web.hello","id":1}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    token_file: Path = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(f"  {TOKEN}\n")
    server = Server(APPS / "web", "--token-file", str(token_file), "--allowed-hosts", "ppy.test, api.internal",
                    http=True)
    yield server
    server.stop()


@pytest.fixture()
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        yield client


ROUTES = [("POST", "/rpc"), ("GET", "/call/web/hello"), ("POST", "/call/web/hello"), ("GET", "/openrpc.json"),
          ("GET", "/metrics"), ("GET", "/console/stats.json"), ("GET", "/")]


def _body(method: str, path: str) -> bytes | None:
    if method != "POST":
        return None
    return RPC if path == "/rpc" else b"[]"


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
def test_routes_need_the_token(http: httpx.Client, method: str, path: str, auth: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    r = http.request(method, path, content=_body(method, path), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    if path == "/rpc":
        assert r.json()["error"]["code"] == -32003
    elif path != "/":
        assert r.json()["error"]["code"] == -32003
        assert "token" in r.json()["error"]["message"]


def test_console_page_without_token_is_the_token_prompt(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.status_code == 401
    assert 'id="token-form"' in r.text
    assert "web.hello" not in r.text  # no app data before the token


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_routes_with_the_token(http: httpx.Client, method: str, path: str) -> None:
    headers = {"Content-Type": "application/json", **GOOD}
    r = http.request(method, path, content=_body(method, path), headers=headers)
    assert r.status_code == 200, r.text


def test_health_routes_need_no_token(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200


def test_rpc_auth_builtin_also_answers_over_http(http: httpx.Client) -> None:
    r = http.post("/rpc", json={"jsonrpc": "2.0", "method": "rpc.auth", "params": [TOKEN], "id": 1}, headers=GOOD)
    assert r.json()["result"] is True


@pytest.mark.parametrize("host", ["ppy.test", "api.internal:8080", "PPY.TEST."])
def test_allowed_hosts_flag_adds_names(http: httpx.Client, host: str) -> None:
    assert http.get("/healthz", headers={"Host": host}).status_code == 200


def test_other_names_still_refused(http: httpx.Client) -> None:
    assert http.get("/healthz", headers={"Host": "evil.ppy.test"}).status_code == 400
