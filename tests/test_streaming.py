"""Streaming generator functions (docs/streaming.md) against a real ``ppy serve``.

Lines dialect ``rpc.item`` notifications and the final response, collected lists for every
other caller (and the --max-frame-bytes bound), Server-Sent Events, ``rpc.cancel``, a closed
connection and the deadline closing the generator (its ``finally`` writes a marker file that
the tests poll), flow control against a client that reads nothing, ``--isolate``, discovery,
metrics, the Python clients, ``ppy call`` and the PHP client's Generator.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ppy
from conftest import APPS, PPY, ROOT, Server, legacy_frame, recv_all, recv_line, require_tool

STREAM_APP = APPS / "stream"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    server = Server(STREAM_APP, "--timeout", "10", http=True)
    yield server
    server.stop()


def send(sock: socket.socket, **request: Any) -> None:
    sock.sendall(json.dumps({"jsonrpc": "2.0", **request}).encode() + b"\n")


def read(sock: socket.socket) -> dict[str, Any]:
    return json.loads(recv_line(sock))  # type: ignore[no-any-return]


def until_reply(sock: socket.socket, rid: Any) -> tuple[list[Any], dict[str, Any]]:
    """The items of stream ``rid`` and its response (lines of other ids are skipped)."""
    items = []
    while True:
        msg = read(sock)
        if msg.get("method") == "rpc.item":
            if msg["params"]["id"] == rid:
                items.append(msg["params"]["item"])
        elif msg.get("id") == rid:
            return items, msg


def wait_for(path: Path, timeout: float = 5.0) -> str:
    """Poll for the marker file a generator's finally writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.005)
    raise AssertionError(f"the generator's finally did not run within {timeout} s ({path} not written)")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- lines dialect ----------------------------------------------------------------------------------


def test_items_then_the_return_value(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.count", params=[3], id=1, stream=True)
        lines = [read(sock) for _ in range(4)]
    assert lines[:3] == [{"jsonrpc": "2.0", "method": "rpc.item", "params": {"id": 1, "seq": i, "item": i}}
                         for i in range(3)]
    assert lines[3] == {"jsonrpc": "2.0", "id": 1, "result": "counted 3"}


def test_async_generator_streams_and_returns_null(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.acount", params={"n": 4, "delay": 0.001}, id="a", stream=True)
        items, reply = until_reply(sock, "a")
    assert items == [0, 1, 2, 3]
    assert reply == {"jsonrpc": "2.0", "id": "a", "result": None}


@pytest.mark.parametrize("method", ["s.fails_after", "s.afails_after"])
def test_exception_mid_stream_keeps_the_items_then_errors(server: Server, method: str) -> None:
    with server.connect() as sock:
        send(sock, method=method, params=[2], id=7, stream=True)
        items, reply = until_reply(sock, 7)
        assert items == [0, 1]
        assert reply["error"]["code"] == -32000
        assert reply["error"]["data"]["type"] == "ValueError"
        assert "gave up after 2" in reply["error"]["message"]
        send(sock, method="s.plain", id=8)  # the connection is fine
        assert read(sock)["result"] == "not a generator"


def test_unencodable_item_is_an_internal_error_after_the_good_items(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.odd", id=1, stream=True)
        items, reply = until_reply(sock, 1)
    assert items == [1]
    assert reply["error"]["code"] == -32603


def test_other_calls_interleave_with_a_stream(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.words", params={"text": "a b c d e f", "delay": 0.05}, id=1, stream=True)
        assert read(sock)["params"]["item"] == "a"
        send(sock, method="s.plain", id=2)
        send(sock, method="s.count", params=[2], id=3, stream=True)
        seen: list[Any] = []
        while len([m for m in seen if "id" in m]) < 3:
            seen.append(read(sock))
        ids = [m["id"] for m in seen if "id" in m]
        assert ids[-1] == 1  # the slow stream ends last; the others answered while it ran
        assert {m["params"]["item"] for m in seen if m.get("params", {}).get("id") == 1} == {"b", "c", "d", "e", "f"}


def test_stream_true_on_a_plain_function_is_ignored(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.plain", id=1, stream=True)
        assert read(sock) == {"jsonrpc": "2.0", "id": 1, "result": "not a generator"}


def test_invalid_params_and_unknown_methods_with_stream_true(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.count", params={"nope": 1}, id=1, stream=True)
        assert read(sock)["error"]["code"] == -32602
        send(sock, method="s.nope", id=2, stream=True)
        assert read(sock)["error"]["code"] == -32601


def test_a_stream_member_that_is_not_a_boolean_is_an_invalid_request(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.count", params=[1], id=1, stream="yes")
        reply = read(sock)
        assert reply["id"] == 1 and reply["error"]["code"] == -32600 and '"stream"' in reply["error"]["message"]


def test_a_second_stream_with_a_running_id_is_refused(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.forever", params={"delay": 0.01}, id=5, stream=True)
        assert read(sock)["method"] == "rpc.item"
        send(sock, method="s.count", params=[1], id=5, stream=True)
        while (msg := read(sock)).get("method") == "rpc.item":
            pass
        assert msg["error"]["code"] == -32600 and "already running" in msg["error"]["message"]
        send(sock, method="rpc.cancel", params={"id": 5})
        assert until_reply(sock, 5)[1]["error"]["code"] == -32005


# -- collected lists --------------------------------------------------------------------------------


def test_without_stream_true_the_items_are_a_list(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.count", params=[3], id=1)
        assert read(sock) == {"jsonrpc": "2.0", "id": 1, "result": [0, 1, 2]}
        send(sock, method="s.acount", params=[2], id=2)
        assert read(sock)["result"] == [0, 1]


def test_legacy_dialect_gets_the_list_byte_compatible(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(legacy_frame(b'{"entry": "s", "func": "words", "param": ["x y", 0]}'))
        reply = recv_all(sock)
    body = json.dumps({"data": ["x", "y"], "error": ""}).encode()
    assert reply == legacy_frame(body)


def test_http_call_and_rpc_get_the_list(server: Server) -> None:
    with urllib.request.urlopen(f"{server.http_url}/call/s/count?n=2", timeout=10) as r:
        assert json.loads(r.read()) == {"result": [0, 1]}
    req = urllib.request.Request(f"{server.http_url}/rpc", headers={"Content-Type": "application/json"},
                                 data=b'{"jsonrpc":"2.0","method":"s.acount","params":[3],"id":1}')
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["result"] == [0, 1, 2]


def test_a_collected_list_over_max_frame_bytes_is_an_error_and_closes_the_generator(tmp_path: Path) -> None:
    mark = tmp_path / "closed"
    with Server(STREAM_APP, "--max-frame-bytes", "20000") as small:
        with small.connect() as sock:
            send(sock, method="s.forever", params={"mark": str(mark)}, id=1)
            reply = read(sock)
            assert reply["error"]["code"] == -32603
            assert "--max-frame-bytes" in reply["error"]["message"] and "20000" in reply["error"]["message"]
            assert reply["error"]["data"]["max_frame_bytes"] == 20000
            wait_for(mark)
            send(sock, method="s.big", params=[10, 1000], id=2)  # a list under the limit is fine
            assert len(read(sock)["result"]) == 10
            send(sock, method="s.big", params=[100, 1000], id=3, stream=True)  # a stream is not limited
            items, reply = until_reply(sock, 3)
            assert len(items) == 100 and reply["result"] is None
        with small.connect() as sock:
            sock.sendall(legacy_frame(b'{"entry": "s", "func": "big", "param": [100, 1000]}'))
            assert b"--max-frame-bytes" in recv_all(sock)


# -- cancellation, disconnects, deadline --------------------------------------------------------------


@pytest.mark.parametrize("method", ["s.forever", "s.aforever"])
def test_rpc_cancel_stops_the_stream_and_closes_the_generator(server: Server, tmp_path: Path, method: str) -> None:
    mark = tmp_path / "closed"
    with server.connect() as sock:
        send(sock, method=method, params={"mark": str(mark), "delay": 0.001}, id=9, stream=True)
        assert read(sock)["method"] == "rpc.item"
        send(sock, method="rpc.cancel", params={"id": 9})
        _items, reply = until_reply(sock, 9)
        assert reply["error"]["code"] == -32005
        wait_for(mark)
        # Nothing more for id 9 after its response; the connection serves the next call.
        send(sock, method="s.plain", id=10)
        assert read(sock) == {"jsonrpc": "2.0", "id": 10, "result": "not a generator"}


def test_rpc_cancel_as_a_request_says_whether_it_stopped_something(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="rpc.cancel", params=[12345], id=1)
        assert read(sock) == {"jsonrpc": "2.0", "id": 1, "result": False}


@pytest.mark.parametrize("method", ["s.forever", "s.aforever"])
def test_a_closed_connection_closes_the_generator(server: Server, tmp_path: Path, method: str) -> None:
    mark = tmp_path / "closed"
    sock = server.connect()
    send(sock, method=method, params={"mark": str(mark), "delay": 0.001}, id=1, stream=True)
    assert read(sock)["method"] == "rpc.item"
    sock.close()
    wait_for(mark)


@pytest.mark.parametrize("method", ["s.forever", "s.aforever"])
def test_the_deadline_ends_the_stream_with_32001_and_closes_the_generator(server: Server, tmp_path: Path,
                                                                           method: str) -> None:
    mark = tmp_path / "closed"
    with server.connect() as sock:
        send(sock, method=method, params={"mark": str(mark), "delay": 0.01}, id=1, stream=True, timeout=0.5)
        items, reply = until_reply(sock, 1)
        assert items
        assert reply["error"]["code"] == -32001
        wait_for(mark)


def test_a_reader_that_reads_nothing_pauses_the_generator(tmp_path: Path) -> None:
    """An endless generator of 10 KB items and a client that reads nothing for 10 s: the server's RSS
    stays bounded, other clients are served, and reading again resumes the same stream."""
    with Server(STREAM_APP, "--timeout", "60") as server, server.connect() as sock:
        pid = server.proc.pid
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        send(sock, method="s.forever", params={"size": 10_000, "mark": str(tmp_path / "closed")}, id=1,
             stream=True)
        assert read(sock)["method"] == "rpc.item"
        before = rss_kb(pid)
        peak = before
        with ppy.Client(server.url) as canary:
            end = time.monotonic() + 10
            while time.monotonic() < end:
                assert canary.call("s.plain") == "not a generator"
                peak = max(peak, rss_kb(pid))
                time.sleep(0.2)
        assert peak - before < 40_000, f"server RSS grew by {peak - before} KiB while the client read nothing"
        # Reading again resumes the stream; cancelling then works.
        items = 0
        while items < 500:
            if read(sock).get("method") == "rpc.item":
                items += 1
        send(sock, method="rpc.cancel", params={"id": 1})
        assert until_reply(sock, 1)[1]["error"]["code"] == -32005


# -- HTTP: Server-Sent Events ----------------------------------------------------------------------


def http_raw(server: Server, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(request)
        return recv_all(sock)


def events(body: bytes) -> list[tuple[str, Any]]:
    """(event, data) pairs of a text/event-stream body: chunked, or whole (a reply sent in one piece
    gets a Content-Length)."""
    text = b""
    rest = body
    if body.startswith(b"event:"):
        text, rest = body, b""
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        text, rest = text + rest[:n], rest[n + 2:]
    out = []
    for block in text.decode().split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.splitlines())
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_sse_items_then_end(server: Server) -> None:
    reply = http_raw(server, b"GET /stream/s/count?n=3 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: text/event-stream" in head.lower()
    assert events(body) == [("item", 0), ("item", 1), ("item", 2), ("end", {"result": "counted 3"})]


def test_sse_post_body_async_generator_and_error_event(server: Server) -> None:
    body = b'{"n": 2}'
    reply = http_raw(server, b"POST /stream/s/afails_after HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                             b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    got = events(reply.partition(b"\r\n\r\n")[2])
    assert got[:2] == [("item", 0), ("item", 1)]
    assert got[2][0] == "error" and got[2][1]["error"]["code"] == -32000


def test_sse_plain_function_and_unknown_function(server: Server) -> None:
    reply = http_raw(server, b"GET /stream/s/plain HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert events(reply.partition(b"\r\n\r\n")[2]) == [("end", {"result": "not a generator"})]
    reply = http_raw(server, b"GET /stream/s/nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    [(kind, data)] = events(reply.partition(b"\r\n\r\n")[2])
    assert kind == "error" and data["error"]["code"] == -32601


def test_sse_follows_the_browser_rules_of_call(server: Server) -> None:
    """Another site's page may not start a stream (403, nothing runs); HEAD never runs a function
    (405); a preflight from an unlisted origin gets no CORS permission."""
    crossed = http_raw(server, b"GET /stream/s/count?n=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Sec-Fetch-Site: cross-site\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n")
    assert crossed.startswith(b"HTTP/1.1 403") and b"event: item" not in crossed
    head = http_raw(server, b"HEAD /stream/s/count?n=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405") and b"GET, POST, OPTIONS" in head
    options = http_raw(server, b"OPTIONS /stream/s/count HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Origin: https://evil.example\r\nAccess-Control-Request-Method: GET\r\n"
                       b"Connection: close\r\n\r\n")
    assert b"access-control-allow-origin" not in options.lower()
    assert events(http_raw(server, b"GET /stream/s/count?n=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Sec-Fetch-Site: same-origin\r\nConnection: close\r\n\r\n"
                           ).partition(b"\r\n\r\n")[2])[:2] == [("item", 0), ("item", 1)]


def test_openapi_describes_a_generators_call_result_as_the_list_of_its_items(server: Server) -> None:
    reply = http_raw(server, b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    doc = json.loads(reply.partition(b"\r\n\r\n")[2])
    ok = doc["paths"]["/call/s/count"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["result"] == {"type": "array", "items": {"type": "integer"}}


def test_sse_disconnect_closes_the_generator(server: Server, tmp_path: Path) -> None:
    mark = tmp_path / "closed"
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    sock.sendall(f"GET /stream/s/forever?mark={mark}&delay=0.005 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"event: item" not in data:
        data += sock.recv(65536)
    sock.close()
    wait_for(mark)


def test_sse_reader_that_reads_nothing_pauses_the_generator() -> None:
    with Server(STREAM_APP, "--timeout", "60", http=True) as server:
        pid = server.proc.pid
        sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /stream/s/forever?size=10000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"event: item" in sock.recv(65536) + sock.recv(65536)
        before = peak = rss_kb(pid)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            peak = max(peak, rss_kb(pid))
            time.sleep(0.2)
        assert peak - before < 40_000, f"server RSS grew by {peak - before} KiB while the client read nothing"
        sock.close()
        with ppy.Client(server.url) as client:  # still healthy
            assert client.call("s.count", 1) == [0]


def test_curl_streams_sse(server: Server) -> None:
    curl = require_tool("curl")
    out = subprocess.run([curl, "-sN", f"{server.http_url}/stream/s/words?text=a%20b&delay=0"],
                         capture_output=True, text=True, timeout=30).stdout
    assert out == 'event: item\ndata: "a"\n\nevent: item\ndata: "b"\n\nevent: end\ndata: {"result":null}\n\n'


# -- discovery, stubs, metrics -------------------------------------------------------------------------


def test_discovery_marks_streams_with_their_item_type(server: Server) -> None:
    with ppy.Client(server.url) as client:
        doc = client.call("rpc.discover")
    methods = {m["name"]: m for m in doc["methods"]}
    assert methods["s.count"]["x-ppy-stream"] is True
    assert methods["s.count"]["result"]["schema"] == {"type": "integer"}
    assert methods["s.acount"]["result"]["schema"] == {"type": "integer"}
    assert methods["s.words"]["result"]["schema"] == {"type": "string"}
    assert "x-ppy-stream" not in methods["s.plain"]


def test_php_stubs_return_a_generator_for_streams(server: Server, tmp_path: Path) -> None:
    out = subprocess.run([*PPY, "stubs", "php", "--url", server.url], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "public function s_count(int $n = 5): \\Generator" in out.stdout
    assert "@return \\Generator<int, int, mixed, mixed>" in out.stdout
    assert "$this->client->streamRequest('s.count'" in out.stdout
    assert "public function s_plain(): string" in out.stdout
    php = require_tool("php")
    stub = tmp_path / "Api.php"
    stub.write_text(out.stdout)
    lint = subprocess.run([php, "-l", str(stub)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_metrics_count_streams_by_outcome_and_items(server: Server) -> None:
    with server.connect() as sock:
        send(sock, method="s.count", params=[4], id=1, stream=True)
        until_reply(sock, 1)
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'ppy_streams_total{method="s.count",outcome="completed"}' in text
    assert 'ppy_stream_items_total{method="s.count"}' in text
    assert 'ppy_streams_total{method="s.forever",outcome="cancelled"}' in text
    assert "ppy_stream_duration_seconds_bucket" in text


# -- clients ------------------------------------------------------------------------------------------


def test_python_client_stream(server: Server, tmp_path: Path) -> None:
    with ppy.Client(server.url) as client:
        stream = client.stream("s.count", 3)
        assert list(stream) == [0, 1, 2]
        assert stream.result == "counted 3"
        mark = tmp_path / "closed"
        for _ in client.stream("s.forever", mark=str(mark)):
            break  # the unreferenced iterator is closed: rpc.cancel
        wait_for(mark)
        assert client.call("s.plain") == "not a generator"
        mark2 = tmp_path / "closed2"
        with client.stream("s.forever", mark=str(mark2), delay=0.001) as items:
            assert next(items) == "x" * 100
        wait_for(mark2)
        assert client.call("s.count", 2) == [0, 1]
        with pytest.raises(ppy.RemoteError) as err:
            list(client.stream("s.fails_after", 1))
        assert err.value.code == -32000
        assert list(client.stream("s.plain")) == []


def test_async_client_stream_with_other_calls_meanwhile(server: Server, tmp_path: Path) -> None:
    mark = tmp_path / "closed"

    async def main() -> None:
        async with ppy.AsyncClient(server.url) as client:
            stream = client.stream("s.acount", 5, 0.02)
            others = asyncio.gather(*(client.call("s.plain") for _ in range(5)))
            items = [item async for item in stream]
            assert items == [0, 1, 2, 3, 4] and stream.result is None
            assert await others == ["not a generator"] * 5
            async with client.stream("s.aforever", mark=str(mark), delay=0.001) as endless:
                async for _ in endless:
                    break
            assert await client.call("s.count", 2) == [0, 1]

    asyncio.run(main())
    wait_for(mark)


def test_ppy_call_prints_items_as_they_come(server: Server) -> None:
    out = subprocess.run([*PPY, "call", "--url", server.url, "s.count", "2"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout == '0\n1\n"counted 2"\n'


PHP_SCRIPT = r"""<?php
require $argv[1] . '/autoload.php';
$client = new Ppy\Client($argv[2]);
$gen = $client->stream('s.count', 3);
foreach ($gen as $item) { echo "item $item\n"; }
echo "return ", $gen->getReturn(), "\n";
foreach ($client->stream('s.forever', mark: $argv[3], delay: 0.001) as $item) {
    echo "first ", strlen($item), "\n";
    break;
}
echo "after ", $client->call('s.plain'), "\n";
try {
    foreach ($client->stream('s.fails_after', 1) as $item) { echo "item $item\n"; }
} catch (Ppy\RemoteException $e) {
    echo "error ", $e->getCode(), "\n";
}
echo "list ", json_encode($client->call('s.count', 2)), "\n";
"""


def test_php_client_generator_with_early_break(server: Server, tmp_path: Path) -> None:
    php = require_tool("php")
    script = tmp_path / "stream.php"
    script.write_text(PHP_SCRIPT)
    mark = tmp_path / "closed"
    out = subprocess.run([php, str(script), str(ROOT / "clients" / "php"), server.url, str(mark)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("item 0\nitem 1\nitem 2\nreturn counted 3\nfirst 100\nafter not a generator\n"
                          "item 0\nerror -32000\nlist [0,1]\n")
    wait_for(mark)


# -- --isolate -------------------------------------------------------------------------------------------


def test_isolate_streams_from_a_worker(tmp_path: Path) -> None:
    with Server(STREAM_APP, "--isolate", "--pool-size", "1", "--timeout", "5") as iso, iso.connect() as sock:
        send(sock, method="s.count", params=[3], id=1, stream=True)
        assert until_reply(sock, 1) == ([0, 1, 2], {"jsonrpc": "2.0", "id": 1, "result": "counted 3"})
        send(sock, method="s.acount", params=[2], id=2)
        assert read(sock)["result"] == [0, 1]
        mark = tmp_path / "cancelled"
        send(sock, method="s.forever", params={"mark": str(mark), "delay": 0.001}, id=3, stream=True)
        assert read(sock)["method"] == "rpc.item"
        send(sock, method="rpc.cancel", params={"id": 3})
        assert until_reply(sock, 3)[1]["error"]["code"] == -32005
        worker = wait_for(mark).split()[1]
        assert worker != str(iso.proc.pid)  # the finally ran in the worker
        mark2 = tmp_path / "timed_out"
        send(sock, method="s.aforever", params={"mark": str(mark2), "delay": 0.01}, id=4, stream=True,
             timeout=0.5)
        assert until_reply(sock, 4)[1]["error"]["code"] == -32001
        assert wait_for(mark2).split()[1] == worker  # closed, not killed: the same worker goes on
        send(sock, method="s.fails_after", params=[1], id=5, stream=True)
        items, reply = until_reply(sock, 5)
        assert items == [0] and reply["error"]["code"] == -32000
        send(sock, method="s.count", params=[1], id=6)
        assert read(sock)["result"] == [0]


def test_isolate_worker_dying_mid_stream_is_32004_after_the_items() -> None:
    with Server(STREAM_APP, "--isolate", "--pool-size", "1", "--timeout", "10") as iso, iso.connect() as sock:
        send(sock, method="s.crash_after", params=[2], id=1, stream=True)
        items, reply = until_reply(sock, 1)
        assert items == [0, 1] and reply["error"]["code"] == -32004
        send(sock, method="s.count", params=[2], id=2, stream=True)  # the replacement worker streams
        assert until_reply(sock, 2) == ([0, 1], {"jsonrpc": "2.0", "id": 2, "result": "counted 2"})


def test_workers_stream_too() -> None:
    with Server(STREAM_APP, "--workers", "2", "--timeout", "10", http=True) as many, many.connect() as sock:
        send(sock, method="s.acount", params=[3], id=1, stream=True)
        assert until_reply(sock, 1) == ([0, 1, 2], {"jsonrpc": "2.0", "id": 1, "result": None})
        with urllib.request.urlopen(f"{many.http_url}/metrics", timeout=10) as r:
            assert 'ppy_streams_total{method="s.acount",outcome="completed"}' in r.read().decode()


def test_isolate_worker_that_ignores_the_cancel_is_killed(tmp_path: Path) -> None:
    with Server(STREAM_APP, "--isolate", "--pool-size", "1", "--timeout", "5") as iso, iso.connect() as sock:
        send(sock, method="s.words", params={"text": "a b", "delay": 30}, id=1, stream=True, timeout=0.3)
        reply = read(sock)
        assert reply["error"]["code"] == -32001
        send(sock, method="s.count", params=[2], id=2)  # served by the replacement worker
        assert read(sock)["result"] == [0, 1]
        deadline = time.monotonic() + 10
        while "did not close" not in iso.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "did not close" in iso.output()


# -- limits, token, shutdown ---------------------------------------------------------------------------


def test_a_stream_holds_one_inflight_slot_until_it_ends(tmp_path: Path) -> None:
    with Server(STREAM_APP, "--max-inflight", "1") as one, one.connect() as sock:
        send(sock, method="s.forever", params={"delay": 0.01}, id=1, stream=True)
        assert read(sock)["method"] == "rpc.item"
        with one.connect() as other:
            send(other, method="s.plain", id=2)
            assert read(other)["error"]["code"] == -32002
        send(sock, method="rpc.cancel", params={"id": 1})
        assert until_reply(sock, 1)[1]["error"]["code"] == -32005
        for rid in range(3, 6):  # the slot came back (once: the limit still holds one call)
            send(sock, method="s.count", params=[1], id=rid, stream=True)
            assert until_reply(sock, rid)[1]["result"] == "counted 1"


def test_streams_need_the_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sesame")
    with Server(STREAM_APP, "--token-file", str(token), http=True) as secured:
        with secured.connect() as sock:
            send(sock, method="s.count", params=[1], id=1, stream=True)
            assert read(sock)["error"]["code"] == -32003
            send(sock, method="rpc.auth", params=["sesame"], id=2)
            assert read(sock)["result"] is True
            send(sock, method="s.count", params=[1], id=3, stream=True)
            assert until_reply(sock, 3) == ([0], {"jsonrpc": "2.0", "id": 3, "result": "counted 1"})
        reply = http_raw(secured, b"GET /stream/s/count HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 401")
        reply = http_raw(secured, b"GET /stream/s/count?n=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                  b"Authorization: Bearer sesame\r\n\r\n")
        assert events(reply.partition(b"\r\n\r\n")[2]) == [("item", 0), ("end", {"result": "counted 1"})]


def test_sigterm_during_an_endless_stream_answers_it_and_exits(tmp_path: Path) -> None:
    mark = tmp_path / "closed"
    server = Server(STREAM_APP, "--timeout", "2")
    try:
        with server.connect() as sock:
            send(sock, method="s.forever", params={"mark": str(mark), "delay": 0.01}, id=1, stream=True)
            assert read(sock)["method"] == "rpc.item"
            server.proc.terminate()
            assert until_reply(sock, 1)[1]["error"]["code"] == -32001
        assert server.proc.wait(30) == 0
        wait_for(mark)
    finally:
        server.stop()
