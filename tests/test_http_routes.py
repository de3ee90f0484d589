"""docs/http.md routes against a real ``ppy serve`` process: status codes, bodies, batches, guards, metrics."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from conftest import APPS, Server

pytestmark = pytest.mark.timeout(60)
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def web() -> Iterator[Server]:
    server = Server(APPS / "web", "--timeout", "1", "--max-inflight", "4", "--max-frame-bytes", "4096",
                    "--access-log", http=True)
    yield server
    server.stop()


@pytest.fixture()
def http(web: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.http_url, timeout=10) as client:
        yield client
    # every test leaves the server healthy
    with httpx.Client(base_url=web.http_url, timeout=10) as client:
        assert client.get("/call/web/hello").json() == {"result": "hello, world."}


def rpc(http: httpx.Client, payload: object) -> httpx.Response:
    return http.post("/rpc", content=json.dumps(payload), headers=JSON)


# -- POST /rpc ------------------------------------------------------------------------------


def test_rpc_single_call(http: httpx.Client) -> None:
    r = rpc(http, {"jsonrpc": "2.0", "method": "web.hello", "id": 7})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"jsonrpc": "2.0", "id": 7, "result": "hello, world."}


def test_rpc_batch_mixes_results_errors_and_notifications(http: httpx.Client) -> None:
    r = rpc(http, [
        {"jsonrpc": "2.0", "method": "web.hello", "id": 1},
        {"jsonrpc": "2.0", "method": "web.nums", "params": [[1, 2, 3]], "id": 2},
        {"jsonrpc": "2.0", "method": "web.hello"},  # notification: no reply
        {"jsonrpc": "2.0", "method": "web.missing", "id": 3},
        {"jsonrpc": "2.0", "method": "web.boom", "id": 4},
        {"jsonrpc": "1.0", "method": "web.hello", "id": 5},
    ])
    assert r.status_code == 200
    by_id = {reply["id"]: reply for reply in r.json()}
    assert set(by_id) == {1, 2, 3, 4, 5}
    assert by_id[1]["result"] == "hello, world."
    assert by_id[2]["result"] == 6
    assert by_id[3]["error"]["code"] == -32601
    assert by_id[4]["error"]["code"] == -32000
    assert by_id[4]["error"]["data"]["type"] == "ValueError"
    assert by_id[5]["error"]["code"] == -32600


def test_rpc_notifications_only_get_204(http: httpx.Client) -> None:
    r = rpc(http, {"jsonrpc": "2.0", "method": "web.hello"})
    assert (r.status_code, r.content) == (204, b"")
    r = rpc(http, [{"jsonrpc": "2.0", "method": "web.hello"}, {"jsonrpc": "2.0", "method": "web.boom"}])
    assert (r.status_code, r.content) == (204, b"")


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", -32700),
    (b'"just a string"', -32600),
    (b"[]", -32600),
    (b'{"jsonrpc": "2.0", "method": 5, "id": 1}', -32600),
    (b"[" * 100 + b"]" * 100, -32600),  # deeper than --max-depth 64
])
def test_rpc_bad_bodies_get_jsonrpc_errors(http: httpx.Client, body: bytes, code: int) -> None:
    r = http.post("/rpc", content=body, headers=JSON)
    assert r.status_code == 200
    assert r.json()["error"]["code"] == code
    assert r.json()["id"] == (1 if b'"id": 1' in body else None)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_post_without_json_content_type_is_refused(http: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"jsonrpc": "2.0", "method": "web.hello", "id": 1}'
    r = http.post("/rpc", content=body, headers=headers)
    assert r.status_code == 415
    assert "application/json" in r.json()["error"]["message"]
    r = http.post("/call/web/hello", content=b"[]", headers=headers)
    assert r.status_code == 415


def test_rpc_accepts_json_content_type_with_charset(http: httpx.Client) -> None:
    r = http.post("/rpc", content=b'{"jsonrpc":"2.0","method":"web.hello","id":1}',
                  headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.json()["result"] == "hello, world."


def test_get_on_rpc_is_405(http: httpx.Client) -> None:
    r = http.get("/rpc")
    assert r.status_code == 405
    assert "POST" in r.headers["allow"]
    assert "not allowed" in r.json()["error"]["message"]


def test_body_over_max_frame_bytes_is_413(http: httpx.Client) -> None:
    big = json.dumps({"jsonrpc": "2.0", "method": "web.hello", "params": ["x" * 5000], "id": 1})
    r = http.post("/rpc", content=big, headers=JSON)
    assert r.status_code == 413
    assert "--max-frame-bytes" in r.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(10):
            yield b" " * 1000

    r = http.post("/call/web/hello", content=chunks(), headers=JSON)
    assert r.status_code == 413


# -- GET/POST /call ------------------------------------------------------------------------


def test_call_get_converts_query_values_by_annotation(http: httpx.Client) -> None:
    r = http.get("/call/web/typed", params=[("n", "2"), ("ratio", "0.5"), ("flag", "true"), ("name", "007"),
                                            ("tags", "a"), ("tags", "b"), ("day", "2024-02-29")])
    assert r.status_code == 200
    assert r.json() == {"result": {"n": [2, "int"], "ratio": [0.5, "float"], "flag": [True, "bool"],
                                   "name": ["007", "str"], "tags": [["a", "b"], "list"],
                                   "day": ["2024-02-29", "date"]}}


@pytest.mark.parametrize(("path", "result"), [
    ("/call/web/nums?xs=[1,2,3]", 6),
    ("/call/web/nums?xs=4&xs=5", 9),
    ("/call/web/nums?xs=7", 7),
    ('/call/web/where?p={"x":1,"y":2}', 12),
    ("/call/web/anything?value=1", [1, "int"]),
    ("/call/web/anything?value=abc", ["abc", "str"]),
    ('/call/web/anything?value={"a":[1]}', [{"a": [1]}, "dict"]),
    ("/call/web/hello", "hello, world."),
])
def test_call_get_query_shapes(http: httpx.Client, path: str, result: object) -> None:
    r = http.get(path)
    assert r.status_code == 200, r.text
    assert r.json() == {"result": result}


def test_call_post_with_object_array_or_empty_body(http: httpx.Client) -> None:
    assert http.post("/call/web/nums", json={"xs": [1, 2]}).json() == {"result": 3}
    assert http.post("/call/web/nums", json=[[3, 4]]).json() == {"result": 7}
    assert http.post("/call/web/hello", content=b"", headers=JSON).json() == {"result": "hello, world."}
    assert http.post("/call/billing.invoice/total", json={}).status_code == 404


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("GET", "/call/web/typed?n=x", None, 400, -32602),
    ("GET", "/call/web/nums?ys=1", None, 400, -32602),
    ("POST", "/call/web/nums", b"{oops", 400, -32700),
    ("POST", "/call/web/nums", b"42", 400, -32600),
    ("POST", "/call/web/nums", b'{"xs": ["a"]}', 400, -32602),
    ("GET", "/call/web/missing", None, 404, -32601),
    ("GET", "/call/nomodule/hello", None, 404, -32601),
    ("GET", "/call/_private/x", None, 404, -32601),
    ("GET", "/call/web/boom", None, 500, -32000),
    ("GET", "/call/web/odd", None, 500, -32603),
    ("GET", "/call/web/slow?seconds=3", None, 504, -32001),
])
def test_call_error_statuses(http: httpx.Client, method: str, path: str, body: bytes | None, status: int,
                             code: int) -> None:
    r = http.request(method, path, content=body, headers=JSON if body is not None else {})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["message"]
    if code == -32000:
        assert error["data"]["type"] == "ValueError"
        assert error["message"] == "boom went the function"


def test_overloaded_call_is_503(http: httpx.Client, web: Server) -> None:
    """--max-inflight 4: four slow calls in flight, the fifth is refused at once with 503."""
    results: list[int] = []

    def slow() -> None:
        with httpx.Client(base_url=web.http_url, timeout=10) as c:
            results.append(c.get("/call/web/slow?seconds=0.8").status_code)

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        status = 0
        for _ in range(100):  # wait (bounded) until both are in flight
            if _metric(http, "ppy_calls_in_flight") >= 4:
                r = http.get("/call/web/hello")
                status = r.status_code
                break
            threading.Event().wait(0.02)
        assert status == 503
        assert r.json()["error"]["code"] == -32002
    finally:
        for t in threads:
            t.join(10)
    assert results == [200] * 4


def test_unknown_route_is_json_404(http: httpx.Client) -> None:
    r = http.get("/nope")
    assert r.status_code == 404
    assert "/rpc" in r.json()["error"]["message"]


# -- Host check -----------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "ok"), [
    ("evil.example", False),
    ("evil.example:80", False),
    ("127.0.0.1.nip.io", False),
    ("localhost", True),
    ("localhost:1234", True),
    ("app.localhost", True),
    ("127.0.0.1:9", True),
    ("[::1]:9", True),
    ("10.1.2.3", True),
])
def test_host_header_is_checked(http: httpx.Client, host: str, ok: bool) -> None:
    r = http.get("/call/web/hello", headers={"Host": host})
    assert r.status_code == (200 if ok else 400)
    if not ok:
        assert "--allowed-hosts" in r.json()["error"]["message"]


# -- discovery, health, metrics -----------------------------------------------------------------


def test_openrpc_document(http: httpx.Client) -> None:
    doc = http.get("/openrpc.json").json()
    assert doc["openrpc"].startswith("1.")
    names = {m["name"]: m for m in doc["methods"]}
    assert {"web.hello", "web.typed", "web.slow"} <= set(names)
    assert names["web.typed"]["params"][0]["schema"] == {"type": "integer"}


def test_health_and_ready(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    r = http.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})


def _metric(http: httpx.Client, name: str, **labels: str) -> float:
    text = http.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def test_metrics_count_calls_outcomes_latency_and_limits(http: httpx.Client, web: Server) -> None:
    before_ok = _metric(http, "ppy_calls_total", method="web.hello", dialect="http", outcome="ok")
    before_err = _metric(http, "ppy_calls_total", method="web.boom", outcome="application_error")
    before_hist = _metric(http, "ppy_call_duration_seconds_count", method="web.hello")
    before_trips = _metric(http, "ppy_limit_trips_total", limit="max_frame_bytes")
    before_timeouts = _metric(http, "ppy_limit_trips_total", limit="timeout")
    for _ in range(3):
        http.get("/call/web/hello")
    http.get("/call/web/boom")
    http.post("/rpc", content=b" " * 5000, headers=JSON)
    http.get("/call/web/slow?seconds=2")
    assert _metric(http, "ppy_calls_total", method="web.hello", dialect="http", outcome="ok") == before_ok + 3
    assert _metric(http, "ppy_calls_total", method="web.boom", outcome="application_error") == before_err + 1
    assert _metric(http, "ppy_call_duration_seconds_count", method="web.hello") == before_hist + 3
    assert _metric(http, "ppy_limit_trips_total", limit="max_frame_bytes") == before_trips + 1
    assert _metric(http, "ppy_limit_trips_total", limit="timeout") == before_timeouts + 1
    r = http.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE ppy_calls_in_flight gauge" in r.text


def test_metrics_see_tcp_calls_and_connections(http: httpx.Client, web: Server) -> None:
    before = _metric(http, "ppy_calls_total", method="web.hello", dialect="lines")
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as sock:
        sock.sendall(b'{"jsonrpc":"2.0","method":"web.hello","id":1}\n')
        assert b"hello" in sock.recv(4096)
        assert _metric(http, "ppy_connections_open", dialect="lines") == 1
        assert _metric(http, "ppy_connections_open", dialect="http") >= 1
    assert _metric(http, "ppy_calls_total", method="web.hello", dialect="lines") == before + 1


def test_unknown_methods_share_one_label(http: httpx.Client) -> None:
    for i in range(5):
        rpc(http, {"jsonrpc": "2.0", "method": f"made.up{i}", "id": i})
    text = http.get("/metrics").text
    assert "made.up" not in text
    assert 'method="(other)"' in text


def test_console_stats_json(http: httpx.Client) -> None:
    http.get("/call/web/hello")
    stats = http.get("/console/stats.json").json()
    hello = stats["methods"]["web.hello"]
    assert hello["calls"] >= 1
    assert len(hello["series"]["rate"]) == stats["window"] // stats["step"]
    assert hello["p50_ms"] > 0
    assert stats["total"]["calls"] >= hello["calls"]
