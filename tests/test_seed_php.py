"""The 2013 PHP client (``exchange()`` from seed.txt) against ``ppy serve`` on the seed's layout.

The server runs with cwd = tests/apps/seed and no APP_DIR argument, so the ``./app`` default
is what gets served, as in the seed.  The PHP code is the seed's own, run by the real ``php``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import APPS, ROOT, Server, require_tool

pytestmark = pytest.mark.timeout(60)

PHP_DIR = ROOT / "tests" / "php_seed"


@pytest.fixture(scope="module")
def seed_server() -> Iterator[Server]:
    srv = Server(None, cwd=APPS / "seed")
    yield srv
    srv.stop()


def php(server: Server, *args: str, stdin: str = "") -> str:
    exe = require_tool("php")
    done = subprocess.run([exe, *args], cwd=PHP_DIR, input=stdin, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PPY_PORT": str(server.port)})
    assert done.returncode == 0, f"php failed ({done.returncode}): {done.stdout[:500]} {done.stderr[:2000]}"
    return done.stdout


def exchange(server: Server, entry: str, func: str, param: Any) -> str:
    return php(server, "call.php", entry, func, stdin=json.dumps(param))


def seed_reply(data: Any) -> str:
    """What the seed's server sent for a result: json.dumps with default separators, ASCII only."""
    return json.dumps({"data": data, "error": ""})


def test_seed_client_prints_hello_exactly(seed_server: Server) -> None:
    # seed_client.php's own last line is the seed's test: print_r(exchange('h', 'hello'));
    assert php(seed_server, "seed_client.php") == '{"data": "hello, world.", "error": ""}'


def test_the_app_folder_defaults_to_dot_app(seed_server: Server) -> None:
    # echo(*args) and boom() exist only in tests/apps/seed/app/h.py, not in the bundled demo.
    assert exchange(seed_server, "h", "echo", [1, 2]) == seed_reply([1, 2])
    assert json.loads(exchange(seed_server, "h", "boom", []))["error"] == "ValueError: boom"


def test_params_keep_their_json_types(seed_server: Server) -> None:
    param = [1, "two", 3.5, True, None, [4, [5]], {"k": "v", "n": 6}]
    assert exchange(seed_server, "h", "echo", param) == seed_reply(param)


def test_unicode(seed_server: Server) -> None:
    out = exchange(seed_server, "h", "echo", ["你好", "héllo", "🐍"])
    assert out == seed_reply(["你好", "héllo", "🐍"])
    assert "\\u4f60\\u597d" in out  # ASCII on the wire, as the seed's json.dumps wrote it


def test_one_mebibyte_string(seed_server: Server) -> None:
    """The seed's read loop subtracts 1024 per socket_read() whatever the read returned, so on a busy
    machine it can stop before the end of a large reply (its own 2013 bug; ppy_exchange() fixes it).
    So: every run must receive an exact prefix of the seed's reply (ppy's bytes are right), and at
    least one of three runs the whole of it."""
    big = "x" * (1 << 20)
    want = seed_reply([big])
    outs = []
    for _ in range(3):
        out = exchange(seed_server, "h", "echo", [big])
        assert want.startswith(out), out[:200]
        outs.append(out)
        if out == want:
            break
    assert want in outs, [len(o) for o in outs]


@pytest.mark.parametrize(("entry", "func", "param", "needle"), [
    ("h", "boom", [], "ValueError: boom"),
    ("h", "nope", [], "nope"),
    ("nope", "hello", [], "nope"),
    ("h", "hello", ["unexpected"], "hello"),
    ("../etc", "passwd", [], "etc"),
])
def test_errors_reach_php_in_the_seeds_shape(seed_server: Server, entry: str, func: str, param: list[Any],
                                             needle: str) -> None:
    reply = json.loads(exchange(seed_server, entry, func, param))
    assert list(reply) == ["data", "error"]
    assert reply["data"] == [] and reply["error"] and needle in reply["error"]
    assert php(seed_server, "seed_client.php") == seed_reply("hello, world.")  # and the server is fine
