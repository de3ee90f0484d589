"""Browser safety on the call routes (cross-site refusal, --cors-origins), HEAD, and JSON-RPC error ids."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import APPS, Server

pytestmark = pytest.mark.timeout(60)
RPC = {"jsonrpc": "2.0", "method": "web.hello", "id": 42}
LISTED = "http://app.example:8080"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    server = Server(APPS / "web", http=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    token_file: Path = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text("tok-browser\n")
    server = Server(APPS / "web", "--token-file", str(token_file), http=True,
                    env={"PPY_CORS_ORIGINS": f"{LISTED}, https://other.example"})
    yield server
    server.stop()


def _calls(server: Server, headers: dict[str, str] | None = None) -> float:
    """How many times web.hello ran (ppy_calls_total summed over its labels)."""
    text = httpx.get(f"{server.http_url}/metrics", headers=headers).text
    total = 0.0
    for line in text.splitlines():
        m = re.match(r'^ppy_calls_total\{(.*)\} (\S+)$', line)
        if m and 'method="web.hello"' in m.group(1):
            total += float(m.group(2))
    return total


def _own(server: Server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
], ids=["cross-site", "same-site", "foreign-origin", "null-origin", "other-port"])
def test_cross_site_requests_are_refused_and_run_nothing(server: Server, headers: dict[str, str]) -> None:
    before = _calls(server)
    got = httpx.get(f"{server.http_url}/call/web/hello", headers=headers)
    assert got.status_code == 403
    assert "--cors-origins" in got.json()["error"]["message"]
    rpc = httpx.post(f"{server.http_url}/rpc", json=RPC, headers=headers)
    assert rpc.status_code == 403
    assert rpc.json()["id"] == 42 and rpc.json()["jsonrpc"] == "2.0"
    form = httpx.post(f"{server.http_url}/call/web/hello", data={"a": "1"}, headers=headers)
    assert form.status_code == 403
    assert _calls(server) == before


@pytest.mark.parametrize("headers", [
    {}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
    {"Origin": "OWN", "Sec-Fetch-Site": "same-origin"},
], ids=["plain-client", "same-origin", "none", "own-origin"])
def test_same_origin_and_plain_clients_run(server: Server, headers: dict[str, str]) -> None:
    headers = {k: (_own(server) if v == "OWN" else v) for k, v in headers.items()}
    assert httpx.get(f"{server.http_url}/call/web/hello", headers=headers).json() == {"result": "hello, world."}
    assert httpx.post(f"{server.http_url}/rpc", json=RPC, headers=headers).json()["result"] == "hello, world."


def test_listed_origin_gets_preflight_and_cors_headers(cors: Server) -> None:
    pre = httpx.options(f"{cors.http_url}/rpc", headers={
        "Origin": LISTED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == LISTED
    assert "POST" in pre.headers["access-control-allow-methods"]
    allowed = pre.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert pre.headers["vary"] == "Origin"
    auth = {"Authorization": "Bearer tok-browser", "Origin": LISTED, "Sec-Fetch-Site": "cross-site"}
    got = httpx.post(f"{cors.http_url}/rpc", json=RPC, headers=auth)
    assert got.json()["result"] == "hello, world."
    assert got.headers["access-control-allow-origin"] == LISTED
    call = httpx.get(f"{cors.http_url}/call/web/hello", headers=auth)
    assert call.status_code == 200 and call.headers["access-control-allow-origin"] == LISTED
    # unlisted origins: the preflight and the call are refused, and nothing ran
    before = _calls(cors, {"Authorization": "Bearer tok-browser"})
    evil = httpx.options(f"{cors.http_url}/call/web/hello", headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    evil = httpx.post(f"{cors.http_url}/rpc", json=RPC, headers={**auth, "Origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.json()["id"] == 42
    assert _calls(cors, {"Authorization": "Bearer tok-browser"}) == before


def test_head_never_runs_a_function(server: Server) -> None:
    before = _calls(server)
    for path in ("/call/web/hello", "/rpc"):
        got = httpx.head(f"{server.http_url}{path}")
        assert got.status_code == 405
        assert "POST" in got.headers["allow"] and "HEAD" not in got.headers["allow"]
    assert _calls(server) == before
    for path in ("/", "/healthz", "/readyz", "/openrpc.json", "/metrics"):
        got = httpx.head(f"{server.http_url}{path}")
        assert got.status_code == 200, path
        assert got.content == b""
        assert int(got.headers["content-length"]) > 0


def test_wrong_method_on_rpc_is_an_invalid_request(server: Server) -> None:
    for method in ("GET", "PUT", "DELETE"):
        got = httpx.request(method, f"{server.http_url}/rpc")
        assert got.status_code == 405
        body = got.json()
        assert body["jsonrpc"] == "2.0" and body["id"] is None and body["error"]["code"] == -32600
        assert got.headers["allow"] == "POST, OPTIONS"


def test_refusals_on_rpc_carry_the_request_id(server: Server, cors: Server) -> None:
    raw = json.dumps(RPC).encode()
    unauthorized = httpx.post(f"{cors.http_url}/rpc", json=RPC)
    assert unauthorized.status_code == 401
    assert unauthorized.json()["id"] == 42
    no_type = httpx.post(f"{server.http_url}/rpc", content=raw)
    assert no_type.status_code == 415
    assert no_type.json() == {"jsonrpc": "2.0", "id": 42, "error": no_type.json()["error"]}
    assert "application/json" in no_type.json()["error"]["message"]
    text = httpx.post(f"{server.http_url}/rpc", content=raw, headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json()["id"] == 42
    bad_host = httpx.post(f"{server.http_url}/rpc", json=RPC, headers={"Host": "evil.example"})
    assert bad_host.status_code == 400
    assert bad_host.json()["jsonrpc"] == "2.0" and bad_host.json()["id"] == 42
    assert "--allowed-hosts" in bad_host.json()["error"]["message"]
    # the connection stays usable after a refusal whose body was read
    with httpx.Client(base_url=server.http_url) as client:
        assert client.post("/rpc", content=raw).status_code == 415
        assert client.post("/rpc", json=RPC).json()["result"] == "hello, world."


def test_too_many_query_fields_or_bad_utf8_get_a_json_400(server: Server) -> None:
    query = "&".join(f"f{i}=1" for i in range(1001))
    got = httpx.get(f"{server.http_url}/call/web/anything?{query}")
    assert got.status_code == 400
    assert "more than 1000 query fields" in got.json()["error"]["message"]
    for raw in (b"value=%ff%fe", b"value=\xff"):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
            sock.sendall(b"GET /call/web/anything?" + raw + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 400 "), data[:100]
        assert b"UTF-8" in data or b"malformed" in data
    assert httpx.get(f"{server.http_url}/call/web/anything?value=%C3%A9").json()["result"][0] == "é"


def test_large_replies_are_gzipped_when_accepted(server: Server) -> None:
    for path in ("/metrics", "/", "/openrpc.json"):
        got = httpx.get(f"{server.http_url}{path}", headers={"Accept-Encoding": "gzip"})
        assert got.status_code == 200
        assert got.headers["content-encoding"] == "gzip", path
        assert "Accept-Encoding" in got.headers["vary"]
        assert int(got.headers["content-length"]) < len(got.content)  # httpx decompressed it
    big = httpx.post(f"{server.http_url}/call/web/anything", json={"value": "x" * 5000},
                     headers={"Accept-Encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip" and big.json() == {"result": ["x" * 5000, "str"]}
    small = httpx.post(f"{server.http_url}/rpc", json=RPC, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers and small.json()["result"] == "hello, world."
    plain = httpx.get(f"{server.http_url}/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and b"ppy_calls_total" in plain.content
