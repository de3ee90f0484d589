"""Other clients and other servers: an off-the-shelf JSON-RPC client, ppy.Client, and the ASGI app
served by a separately started uvicorn (``--factory``) and mounted inside another Starlette app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tinyrpc import RPCClient
from tinyrpc.exc import RPCError
from tinyrpc.protocols.jsonrpc import JSONRPCProtocol
from tinyrpc.transports.http import HttpPostClientTransport

import ppy
from conftest import APPS, ROOT, Server, free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def web() -> Iterator[Server]:
    server = Server(APPS / "web", "--timeout", "2", http=True)
    yield server
    server.stop()


def test_tinyrpc_off_the_shelf_client(web: Server) -> None:
    """tinyrpc (PyPI, JSON-RPC 2.0 over HTTP POST via requests) calls ppy as any JSON-RPC server."""
    transport = HttpPostClientTransport(f"{web.http_url}/rpc", headers={"Content-Type": "application/json"})
    client = RPCClient(JSONRPCProtocol(), transport)
    assert client.call("web.hello", [], {}) == "hello, world."
    assert client.call("web.nums", [[1, 2, 3]], {}) == 6
    assert client.call("web.typed", [], {"n": "3", "ratio": 1, "flag": False, "name": "x", "tags": [],
                                         "day": "2024-01-02"})["n"] == [3, "int"]
    proxy = client.get_proxy(prefix="web.")
    assert proxy.nums(xs=[4, 5]) == 9
    with pytest.raises(RPCError, match="boom went the function"):
        client.call("web.boom", [], {})
    with pytest.raises(RPCError, match="not found"):
        client.call("web.nope", [], {})
    client.call("web.hello", [], {}, one_way=True)  # a notification: 204, nothing to read

    protocol = JSONRPCProtocol()
    first = protocol.create_request("web.hello", [], {})
    second = protocol.create_request("web.nums", [[1, 1]], {})
    batch = protocol.create_batch_request([first, second])
    replies = protocol.parse_reply(transport.send_message(batch.serialize()))
    by_id = {reply.unique_id: reply.result for reply in replies}
    assert by_id == {first.unique_id: "hello, world.", second.unique_id: 2}


def test_ppy_client_over_http(web: Server) -> None:
    with ppy.Client(web.http_url) as client:
        assert client.call("web.hello") == "hello, world."
        assert client.web.nums([1, 2]) == 3
        with pytest.raises(ppy.RemoteError) as info:
            client.call("web.boom")
        assert info.value.code == -32000


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{out}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"uvicorn did not answer {url} within {timeout} s")


def _uvicorn(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", *args, "--port", str(port), "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    return proc, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def test_create_app_under_a_separate_uvicorn(tmp_path: Path) -> None:
    """``uvicorn --factory ppy.server.http:create_app`` with the app folder and token from PPY_* variables."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    proc, port = _uvicorn("--factory", "ppy.server.http:create_app",
                          env={"PPY_APP_DIR": str(APPS / "web"), "PPY_TOKEN_FILE": str(token_file)})
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/healthz", proc)
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert httpx.get(f"{base}/call/web/hello").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert httpx.get(f"{base}/call/web/hello", headers=auth).json() == {"result": "hello, world."}
        r = httpx.post(f"{base}/rpc", json={"jsonrpc": "2.0", "method": "web.nums", "params": [[2, 3]], "id": 1},
                       headers=auth)
        assert r.json()["result"] == 5
        assert 'method="web.nums"' in httpx.get(f"{base}/metrics", headers=auth).text
    finally:
        _stop(proc)


def test_mounted_inside_another_starlette_app() -> None:
    proc, port = _uvicorn("--app-dir", str(APPS / "mount"), "outer:app", env={"WEB_APP_DIR": str(APPS / "web")})
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/own", proc)
        assert httpx.get(f"{base}/own").json() == {"own": True}
        assert httpx.get(f"{base}/py/call/web/nums?xs=[1,2]").json() == {"result": 3}
        r = httpx.post(f"{base}/py/rpc", json={"jsonrpc": "2.0", "method": "web.hello", "id": 1})
        assert r.json()["result"] == "hello, world."
        page = httpx.get(f"{base}/py/")
        assert page.status_code == 200 and "<title>ppy console</title>" in page.text
        assert httpx.get(f"{base}/py/openrpc.json").json()["methods"]
    finally:
        _stop(proc)
