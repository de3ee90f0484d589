"""``POST /rpc`` answered below ASGI (ppy.server.http.direct): which requests take it, and that its
replies are the ASGI route's, byte for byte."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import APPS, Server
from ppy.server.http.app import create_app
from ppy.server.http.direct import DirectRpc
from ppy.server.http.h1 import DirectRequest, H1Connection, Limits, Listener

pytestmark = pytest.mark.timeout(60)
TOKEN = "s3cret-token-for-tests"


def _request(body: bytes, *headers: str, path: str = "/rpc", version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _call(method: str, *params: Any, rid: int | None = 1) -> bytes:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": list(params)}
    if rid is not None:
        req["id"] = rid
    return json.dumps(req).encode()


async def _read_reply(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"content-length: (\d+)", head)
    assert match, head
    return head, await reader.readexactly(int(match.group(1)))


class Spy:
    """The app's own DirectRpc, counting the requests it answers."""

    def __init__(self, inner: DirectRpc) -> None:
        self.inner = inner
        self.answered = 0

    def takes(self, headers: list[tuple[bytes, bytes]], length: int) -> bool | None:
        return self.inner.takes(headers, length)

    def answer(self, conn: H1Connection, request: DirectRequest) -> None:
        self.answered += 1
        self.inner.answer(conn, request)


def _in_process(tmp_path: Path, scenario: Any) -> None:
    """Serve the web test app with ppy's HTTP/1.1 connections in this process, and run ``scenario``."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)

    async def main() -> None:
        app = create_app(APPS / "web", token_file=token_file, max_frame_bytes=4096)
        spy = Spy(app.state.direct)
        listener = Listener(app, Limits(), shortcut=spy)
        server = await asyncio.get_running_loop().create_server(listener.factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await scenario(port, spy)
        finally:
            server.close()
            for conn in list(listener.connections):
                conn.close()
            app.state.ppy.dispatcher.runner.close()

    asyncio.run(main())


AUTH = f"Authorization: Bearer {TOKEN}"
JSON = "Content-Type: application/json"


def test_plain_post_rpc_is_answered_below_asgi(tmp_path: Path) -> None:
    async def scenario(port: int, spy: Spy) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Three pipelined requests in one write: a sync call, an async one, a notification.
        writer.write(_request(_call("web.hello"), JSON, AUTH) + _request(_call("web.slow", 0.01, rid=2), JSON, AUTH)
                     + _request(_call("web.hello", rid=None), JSON, AUTH))
        head, body = await _read_reply(reader)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and json.loads(body)["result"] == "hello, world."
        head, body = await _read_reply(reader)
        assert json.loads(body) == {"jsonrpc": "2.0", "id": 2, "result": 0.01}
        head, body = await _read_reply(reader)
        assert head.startswith(b"HTTP/1.1 204 No Content\r\n") and body == b""
        assert spy.answered == 3
        # A client that leaves before its reply: the server goes on answering others.
        _, gone = await asyncio.open_connection("127.0.0.1", port)
        gone.write(_request(_call("web.slow", 0.2), JSON, AUTH))
        await gone.drain()
        gone.close()
        writer.write(_request(_call("web.boom"), JSON, AUTH))
        head, body = await _read_reply(reader)
        assert json.loads(body)["error"]["code"] == -32000
        writer.close()

    _in_process(tmp_path, scenario)


@pytest.mark.parametrize(("headers", "status"), [
    ((JSON, "Authorization: Bearer wrong"), 401),
    ((JSON,), 401),  # no token
    (("Content-Type: text/plain", AUTH), 415),
    ((JSON, AUTH, "Origin: https://evil.example"), 403),
    ((JSON, AUTH, "Sec-Fetch-Site: cross-site"), 403),
    ((JSON, AUTH, "Origin: http://127.0.0.1"), 200),  # a same-origin browser: CORS rules, then the call
    ((JSON, AUTH, "Expect: 100-continue"), 200),
])
def test_requests_the_route_must_judge_go_through_the_app(tmp_path: Path, headers: tuple[str, ...],
                                                          status: int) -> None:
    async def scenario(port: int, spy: Spy) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request(_call("web.hello"), *headers))
        head, body = await _read_reply(reader)
        assert head.startswith(b"HTTP/1.1 %d " % status), head
        assert spy.answered == 0
        if status != 200:
            assert json.loads(body)["id"] == 1  # refused as JSON-RPC, with the request's id
        writer.close()

    _in_process(tmp_path, scenario)


def test_bodies_the_shortcut_does_not_take(tmp_path: Path) -> None:
    async def scenario(port: int, spy: Spy) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        big = _call("web.anything", "x" * 5000)
        writer.write(_request(big, JSON, AUTH))  # over --max-frame-bytes: 413 from the route
        head, body = await _read_reply(reader)
        assert head.startswith(b"HTTP/1.1 413 ") and b"--max-frame-bytes" in body
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        small = _call("web.hello")
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small)
        writer.write(_request(chunked, JSON, AUTH, "Transfer-Encoding: chunked"))
        head, body = await _read_reply(reader)
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["result"] == "hello, world."
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request(small, JSON, AUTH, path="/rpc?via=query"))
        head, body = await _read_reply(reader)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert spy.answered == 0
        writer.close()

    _in_process(tmp_path, scenario)


# -- against a real ppy serve: the shortcut's replies are the route's -------------------------------


@pytest.fixture(scope="module")
def web() -> Iterator[Server]:
    server = Server(APPS / "web", "--max-frame-bytes", "65536", http=True)
    yield server
    server.stop()


def _exchange(port: int, raw: bytes) -> bytes:
    """Send one request on a new connection; the reply, with its Date header taken out."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while True:
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                match = re.search(rb"content-length: (\d+)", head)
                if match and len(rest) >= int(match.group(1)):
                    break
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head)
    assert length is not None and int(length.group(1)) == len(body), data
    # What differs between two calls of the same request: the date, and an error's request number.
    head = re.sub(rb"date: [^\r]*\r\n", b"", re.sub(rb"content-length: \d+", b"content-length: N", head))
    return head + b"\r\n\r\n" + re.sub(rb'"request_id":\d+', b'"request_id":N', body)


CASES = [
    ("a result", _call("web.hello"), ()),
    ("an error the function raised", _call("web.boom"), ()),
    ("an unknown method", _call("web.nope"), ()),
    ("bad params", _call("web.nums", "x"), ()),
    ("a notification", _call("web.hello", rid=None), ()),
    ("not JSON", b"{nope", ()),
    ("not a request", b'{"jsonrpc":"2.0","id":5}', ()),
    ("a batch", b"[" + _call("web.hello") + b"," + _call("web.slow", 0.01, rid=2) + b"]", ()),
    ("an async call", _call("web.slow", 0.01), ()),
    ("HTTP/1.0", _call("web.hello"), ("HTTP/1.0",)),
    ("Connection: close", _call("web.hello"), ("Connection: close",)),
    ("a large reply, gzip", _call("web.anything", "x" * 5000), ("Accept-Encoding: gzip",)),
    ("a small reply, gzip", _call("web.hello"), ("Accept-Encoding: gzip, deflate",)),
]


@pytest.mark.parametrize(("name", "body", "extra"), CASES, ids=[c[0] for c in CASES])
def test_replies_are_the_asgi_routes_byte_for_byte(web: Server, name: str, body: bytes,
                                                   extra: tuple[str, ...]) -> None:
    version = "1.0" if "HTTP/1.0" in extra else "1.1"
    headers = [h for h in extra if h != "HTTP/1.0"]
    direct = _exchange(web.http_port, _request(body, JSON, *headers, version=version))
    # The same request from a same-origin page: a browser's, so the ASGI route judges and answers it.
    via_app = _exchange(web.http_port, _request(body, JSON, *headers, "Origin: http://127.0.0.1",
                                                version=version))
    assert direct == via_app
    assert direct.startswith((b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 204 No Content\r\n"))
    if "gzip" in name and "large" in name:
        assert b"content-encoding: gzip" in direct
        packed = direct.partition(b"\r\n\r\n")[2]
        assert json.loads(gzip.decompress(packed))["result"][0] == "x" * 5000
