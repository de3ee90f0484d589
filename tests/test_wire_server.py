"""The codecs' edge cases, end to end against a real ``ppy serve``.

The vectors pin what the decoders return; these tests pin what a client then
sees on a real socket: the error a codec finds after good requests reaches the
client at once, replies to calls already running are not cut off by the close,
and a legacy client that stalls after its header meets the request deadline.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import DEMO_APP, Server, recv_all, recv_line

pytestmark = pytest.mark.timeout(60)

VECTORS = Path(__file__).parent / "vectors"
LIMIT = 1024


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(DEMO_APP, "--max-frame-bytes", str(LIMIT), "--request-timeout", "1")
    yield srv
    srv.stop()


def request(method: str, params: list[object], rid: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid}).encode() + b"\n"


def read_lines(sock: socket.socket) -> list[dict[str, object]]:
    return [json.loads(line) for line in recv_all(sock).splitlines()]


def test_legacy_reply_vector_from_a_real_server(server: Server) -> None:
    vector = next(v for v in json.loads((VECTORS / "legacy_replies.json").read_text())["vectors"]
                  if v["name"] == "hello")
    frame = next(v for v in json.loads((VECTORS / "legacy_frames.json").read_text())["vectors"]
                 if v["name"] == "seed-php-hello")
    request_bytes = frame["input"][0]["text"].encode()
    with server.connect() as sock:
        for i in range(0, len(request_bytes), 7):  # split across segments, the header too
            sock.sendall(request_bytes[i : i + 7])
            time.sleep(0.005)
        assert recv_all(sock) == vector["bytes"]["text"].encode()


def test_too_long_line_after_a_good_one_answers_both_then_closes(server: Server) -> None:
    """One read holds a slow call and a too-long line: the call's reply still arrives, then the close."""
    with server.connect() as sock:
        sock.sendall(request("h.asleep", [300], 1) + b"[" + b" " * (LIMIT + 10) + b"]\n")
        start = time.monotonic()
        replies = read_lines(sock)
        elapsed = time.monotonic() - start
    assert {"jsonrpc": "2.0", "id": 1, "result": 300} in replies
    errors = [r for r in replies if "error" in r]
    assert len(errors) == 1 and errors[0]["id"] is None
    assert errors[0]["error"]["code"] == -32600  # type: ignore[index]
    assert "max-frame-bytes" in errors[0]["error"]["message"]  # type: ignore[index]
    assert elapsed < 10  # answered at once, not after an idle/request timeout


def test_unfinished_line_at_half_close_is_an_error_and_earlier_replies_arrive(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(request("h.asleep", [200], 7) + b'{"jsonrpc":"2.0","method":"h.hello","id":8}')
        sock.shutdown(socket.SHUT_WR)
        replies = read_lines(sock)
    assert {"jsonrpc": "2.0", "id": 7, "result": 200} in replies
    (error,) = [r for r in replies if "error" in r]
    assert error["error"]["code"] == -32600 and "newline" in error["error"]["message"]  # type: ignore[index]
    assert len(replies) == 2  # the unfinished request itself was not run


def test_legacy_client_stalling_after_the_header_meets_the_request_deadline(server: Server) -> None:
    """The deadline runs from the first byte to the last: 11 header bytes do not switch it off."""
    with server.connect(timeout=10) as sock:
        sock.sendall(b"39.00000000")
        reply = recv_all(sock, timeout=10)
    body = json.loads(reply[11:])
    assert body["data"] == [] and "request-timeout" in body["error"]


def test_the_server_stays_healthy(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(request("rpc.ping", [], 1))
        assert json.loads(recv_line(sock)) == {"jsonrpc": "2.0", "id": 1, "result": "pong"}
