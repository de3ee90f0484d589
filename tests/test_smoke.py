"""A first end-to-end check: the demo app over both dialects with a real server."""

from __future__ import annotations

import json

import pytest

import ppy
from conftest import Server, legacy_frame, recv_all


def test_legacy_hello_is_byte_identical_to_the_seed(demo_server: Server) -> None:
    with demo_server.connect() as sock:
        sock.sendall(legacy_frame(b'{"entry": "h", "func": "hello", "param": []}'))
        reply = recv_all(sock)
    body = json.dumps({"data": "hello, world.", "error": ""}).encode()
    assert reply == legacy_frame(body)


def test_client_calls_demo(demo_server: Server) -> None:
    with ppy.Client(demo_server.url) as client:
        assert client.call("h.hello") == "hello, world."
        assert client.h.greet("bob", "2") == "hello, bob. hello, bob."
        assert client.call("h.add", a=1, b=2.5) == 3.5


def test_demo_greet_caps_times_so_a_tiny_request_cannot_ask_for_a_huge_reply(demo_server: Server) -> None:
    with ppy.Client(demo_server.url) as client:
        with pytest.raises(ppy.RemoteApplicationError) as err:
            client.h.greet("bob", 10_000_000)
        assert "times must be between 0 and 1000" in str(err.value)
        assert client.h.greet("bob", 1000).count("hello, bob.") == 1000
        assert client.call("h.hello") == "hello, world."
