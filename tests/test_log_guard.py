"""Logs under hostile clients: control characters escaped, repeated error lines rate-limited."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from conftest import DEMO_APP, Server

pytestmark = pytest.mark.timeout(60)

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _lines_call(sock: socket.socket, method: str, params: list[object], n: int = 1) -> list[dict[str, object]]:
    body = b"".join(json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": i}).encode() + b"\n"
                    for i in range(n))
    sock.sendall(body)
    data = b""
    while data.count(b"\n") < n:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_a_newline_in_a_method_name_cannot_forge_a_log_line() -> None:
    forged = "h.hello\n2030-01-01 00:00:00,000 INFO ppy.access: lines h.hello ok 0.1ms\x1b[2J"
    with Server(DEMO_APP, "--access-log") as server:
        with server.connect() as sock:
            reply = _lines_call(sock, forged, [])[0]
            assert reply["error"]["code"] == -32601  # type: ignore[index]
            assert _lines_call(sock, "h.hello", [])[0]["result"] == "hello, world."
        deadline = time.monotonic() + 10
        while "h.hello ok" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = server.output()
    assert "\\x0a2030-01-01" in out, out  # the newline is shown escaped, on the same line
    assert "\x1b" not in out and "\\x1b[2J" in out
    for line in out.splitlines():
        assert not line.startswith("2030-01-01"), line
        assert STAMP.match(line) or line.startswith("ppy"), line  # only records (no traceback here) and the banner


def test_failing_calls_in_a_tight_loop_write_a_bounded_log() -> None:
    with Server(DEMO_APP) as server:
        with server.connect() as sock:
            start = time.monotonic()
            for _ in range(10):
                replies = _lines_call(sock, "h.greet", ["x", 5000], n=100)
                assert all(r["error"]["code"] == -32000 for r in replies)  # type: ignore[index]
            size = len(server.output())
            assert server.output().count("call h.greet failed") == 10  # RateLimit.BURST records, not 1,000
            assert "further lines like this suppressed" in server.output()
            assert size < 100_000, size  # 1,000 tracebacks were ~2 MB
            while time.monotonic() - start < 5.5:  # the window (RateLimit.WINDOW_S) ends: the next line reports
                time.sleep(0.1)
            _lines_call(sock, "h.greet", ["x", 5000])
        deadline = time.monotonic() + 10
        while "more suppressed" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert re.search(r"\b990 more suppressed like the next line", server.output()), server.output()[-2000:]
        with server.connect() as sock:
            assert _lines_call(sock, "h.hello", [])[0]["result"] == "hello, world."


def test_rate_limit_caps_each_subject_and_each_call_site() -> None:
    import io
    import logging

    from ppy.logs import RateLimit, TextFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter("%(message)s"))
    handler.addFilter(RateLimit(handler))
    log = logging.getLogger("ppy.test-rate-limit")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        for _ in range(30):
            log.warning("wrong token from %s", "10.0.0.1")  # one subject: BURST lines
        for i in range(200):
            log.warning("closed %s", f"peer {i}", extra={"ppy_key": f"host{i}"})  # many subjects: SITE_BURST
        log.info("info %s", "x\ny")  # never limited; the newline in the argument is escaped
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert sum("wrong token" in x for x in lines) == RateLimit.BURST
    assert sum(x.startswith("closed") for x in lines) == RateLimit.SITE_BURST
    assert lines[-1] == "info x\\x0ay"
