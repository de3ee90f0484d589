"""README.md, clients, the Python clients, against real servers over tcp://, unix:// (and http:// when served).

``ppy.Client`` (blocking) and ``ppy.AsyncClient`` (pipelined asyncio): calls, sugar,
batches, notifications, timeouts, typed errors, reconnects, tokens.
"""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ppy
from conftest import APPS, Server, free_port
from probes import wait_inflight

pytestmark = pytest.mark.timeout(90)

SEMANTICS = APPS / "semantics"
@pytest.fixture(scope="module")
def uds_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uds") / "ppy.sock"


@pytest.fixture(scope="module")
def server(uds_path: Path) -> Iterator[Server]:
    srv = Server(SEMANTICS, "--timeout", "5", "--uds", str(uds_path), http=True)
    yield srv
    srv.stop()


@pytest.fixture(params=["tcp", "unix"])
def url(request: pytest.FixtureRequest, server: Server, uds_path: Path) -> str:
    return server.url if request.param == "tcp" else f"unix://{uds_path}"


def server_on(port: int, *args: str, http: bool = False) -> Server:
    """A server on a given port (to restart "the same server")."""
    srv = Server(SEMANTICS, "--port", str(port), *args, http=http, wait=False)  # the last --port wins
    srv.port = port
    srv.url = f"tcp://127.0.0.1:{port}"
    srv.wait_ready()
    return srv


def wait_count(client: ppy.Client, key: str, want: int) -> int:
    got = -1
    for _ in range(100):  # bounded: ~2 s
        got = client.call("state.count", key)
        if got >= want:
            break
        time.sleep(0.02)
    return int(got)


# -- ppy.Client ----------------------------------------------------------------------------------

def test_call_positional_and_keyword(url: str) -> None:
    with ppy.Client(url) as client:
        assert client.call("aio.double", 21) == 42
        assert client.call("params.defaults", name="ann", times="2") == "hi ann hi ann"
        assert client.call("billing.invoice.total", amounts=[1, 2], tax=0.5) == 4.5
        assert client.request("params.raw", {"a": 1, "z": 2})["extra"] == {"z": 2}


def test_mixing_positional_and_keyword_is_refused_before_sending(url: str) -> None:
    with ppy.Client(url) as client, pytest.raises(ppy.ClientError, match="not both"):
        client.call("params.defaults", "ann", times=2)


def test_attribute_sugar(url: str) -> None:
    with ppy.Client(url) as client:
        assert client.aio.double(5) == 10
        assert client.billing.invoice.total(amounts=[1, 1]) == 2.0
        assert client.shop.cart.label(4) == "shop:4"


def test_attribute_sugar_on_the_demo(demo_server: Server) -> None:
    with ppy.Client(demo_server.url) as client:
        assert client.h.hello() == "hello, world."
        assert client.h.greet(name="ann") == "hello, ann."


def test_one_persistent_connection_for_many_calls(server: Server) -> None:
    with ppy.Client(server.url) as client:
        client.call("rpc.ping")
        sock = client._sock
        for i in range(50):
            assert client.call("aio.double", i) == 2 * i
        assert client._sock is sock


def test_batch(url: str) -> None:
    with ppy.Client(url) as client:
        out = client.batch([("aio.double", [1]), ("no.such", []), ("params.to_int", {"n": "3"}),
                            ("errors.declined", [2])])
    assert out[0] == 2
    assert isinstance(out[1], ppy.RemoteMethodNotFound) and out[1].code == -32601
    assert out[2] == ["int", 3]
    assert isinstance(out[3], ppy.RemoteApplicationError) and out[3].type == "PaymentDeclined"


def test_notify_runs_without_a_reply(url: str) -> None:
    key = f"client-note-{url[:4]}"
    with ppy.Client(url) as client:
        before = client.call("state.count", key)
        client.notify("state.bump", key)
        client.notify("state.bump", key=key)
        assert client.call("rpc.ping") == "pong"  # the next reply read is this call's, not a stray one
        assert wait_count(client, key, before + 2) == before + 2


def test_per_call_timeout_then_next_call_works(url: str) -> None:
    with ppy.Client(url, timeout=10) as client:
        start = time.monotonic()
        with pytest.raises(ppy.ClientTimeout):
            client.call("slow.sleep", 3000, timeout=0.3)
        assert time.monotonic() - start < 2.5  # wide margin: far less than the 3 s call
        assert client.call("aio.double", 2) == 4


def test_client_timeout_against_a_silent_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with ppy.Client(f"tcp://127.0.0.1:{port}", timeout=0.3) as client:
            with pytest.raises(ppy.ClientTimeout) as info:
                client.call("h.hello")
            assert not isinstance(info.value, ppy.RemoteError)
            assert "within 0.3 s" in str(info.value)


def test_typed_remote_errors(url: str) -> None:
    with ppy.Client(url) as client:
        with pytest.raises(ppy.RemoteApplicationError) as app:
            client.call("errors.declined", 5)
        assert (app.value.code, app.value.type, app.value.message) == (-32000, "PaymentDeclined",
                                                                       "card declined for 5")
        assert isinstance(app.value, ppy.RemoteError)
        with pytest.raises(ppy.RemoteMethodNotFound) as nf:
            client.call("expose.system", "true")
        assert nf.value.code == -32601 and nf.value.type is None
        with pytest.raises(ppy.RemoteInvalidParams) as ip:
            client.call("params.to_int", "x")
        assert ip.value.code == -32602 and ip.value.data["param"] == "n" and "'n'" in ip.value.message
        with pytest.raises(ppy.RemoteInternalError) as ie:
            client.call("results.opaque")
        assert ie.value.code == -32603 and "Opaque" in ie.value.message
        assert client.call("rpc.ping") == "pong"  # errors leave the connection usable


def test_server_side_timeout_is_a_remote_timeout_and_a_client_timeout() -> None:
    with Server(SEMANTICS, "--timeout", "0.3") as srv, ppy.Client(srv.url, timeout=10) as client:
        with pytest.raises(ppy.RemoteTimeout) as info:
            client.call("slow.asleep", 3000)
        assert info.value.code == -32001 and info.value.data["timeout"] == 0.3
        assert isinstance(info.value, ppy.ClientTimeout) and isinstance(info.value, TimeoutError)
        assert client.call("slow.asleep", 1) == 1


def test_connect_error_when_nothing_listens(tmp_path: Path) -> None:
    with pytest.raises(ppy.ConnectError, match="cannot connect") as info:
        ppy.Client(f"tcp://127.0.0.1:{free_port()}").call("h.hello")
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(ppy.ConnectError):
        ppy.Client(f"unix://{tmp_path / 'nothing.sock'}").call("h.hello")


def test_bad_url_is_a_clear_client_error() -> None:
    with pytest.raises(ppy.ClientError, match="unsupported URL scheme"):
        ppy.Client("ftp://127.0.0.1:1")
    with pytest.raises(ppy.ClientError, match="no socket path"):
        ppy.Client("unix://")


def test_reconnect_after_server_restart_on_the_same_port() -> None:
    port = free_port()
    first = server_on(port)
    try:
        with ppy.Client(f"tcp://127.0.0.1:{port}") as client:
            pid1 = client.call("state.identity")[0]
            first.stop()
            with pytest.raises(ppy.ConnectError):
                client.call("rpc.ping")  # nothing listens now: a clear error, not a hang
            second = server_on(port)
            try:
                pid2 = client.call("state.identity")[0]  # reconnects transparently
                assert pid2 != pid1
                assert client.call("aio.double", 3) == 6
            finally:
                second.stop()
    finally:
        first.stop()


def test_reconnect_is_transparent_when_the_restart_happened_between_calls() -> None:
    port = free_port()
    first = server_on(port)
    with ppy.Client(f"tcp://127.0.0.1:{port}") as client:
        try:
            assert client.call("rpc.ping") == "pong"
        finally:
            first.stop()
        second = server_on(port)
        try:
            assert client.call("aio.double", 4) == 8  # the dead connection is replaced, no error seen
        finally:
            second.stop()


def test_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with Server(SEMANTICS, "--token-file", str(token_file)) as srv:
        with ppy.Client(srv.url) as client:
            assert client.call("rpc.ping") == "pong"  # liveness needs no token
            with pytest.raises(ppy.RemoteUnauthorized) as info:
                client.call("aio.double", 1)
            assert info.value.code == -32003
        with ppy.Client(srv.url, token="wrong") as client, pytest.raises(ppy.RemoteUnauthorized):
            client.call("aio.double", 1)
        with ppy.Client(srv.url, token="s3cret-token") as client:
            assert client.call("aio.double", 1) == 2
            assert client.batch([("aio.double", [2])]) == [4]

        async def run() -> None:
            async with ppy.AsyncClient(srv.url, token="s3cret-token") as good:
                assert await asyncio.gather(*(good.call("aio.double", i) for i in range(20))) == [
                    2 * i for i in range(20)]
            async with ppy.AsyncClient(srv.url, token="nope") as bad:
                with pytest.raises(ppy.RemoteUnauthorized):
                    await bad.call("aio.double", 1)

        asyncio.run(run())


def test_http_transport(server: Server) -> None:
    with ppy.Client(server.http_url) as client:
        assert client.call("aio.double", 4) == 8
        assert client.aio.double(x=5) == 10
        with pytest.raises(ppy.RemoteApplicationError) as info:
            client.call("errors.declined", 1)
        assert info.value.type == "PaymentDeclined"
        assert client.batch([("aio.double", [1]), ("no.such", [])])[0] == 2
        client.notify("state.bump", "http-note")
        assert wait_count(client, "http-note", 1) == 1


# -- ppy.AsyncClient -----------------------------------------------------------------------------

def test_async_200_calls_in_flight_on_one_connection(url: str) -> None:
    async def run() -> None:
        rng = random.Random(7)
        delays = [rng.randrange(0, 200) for _ in range(200)]
        async with ppy.AsyncClient(url) as client:
            await client.call("rpc.ping")
            link = client._link
            start = time.monotonic()
            results = await asyncio.gather(*(client.call("slow.asleep", d) for d in delays))
            elapsed = time.monotonic() - start
            assert results == delays  # each reply matched to its own call, whatever the order
            assert client._link is link  # all on the one connection
            assert elapsed < 5  # pipelined, not one after another (sequential would take ~20 s)
            mixed = await asyncio.gather(client.aio.double(1), client.call("params.to_int", n="2"),
                                         client.call("rpc.ping"))
            assert mixed == [2, ["int", 2], "pong"]

    asyncio.run(run())


def test_async_timeout_errors_and_the_connection_survives(url: str) -> None:
    async def run() -> None:
        async with ppy.AsyncClient(url, timeout=10) as client:
            with pytest.raises(ppy.ClientTimeout):
                await client.call("slow.asleep", 3000, timeout=0.3)
            with pytest.raises(ppy.RemoteApplicationError) as app:
                await client.call("errors.declined", 9)
            assert (app.value.code, app.value.type) == (-32000, "PaymentDeclined")
            with pytest.raises(ppy.RemoteInvalidParams):
                await client.call("params.to_int", "x")
            with pytest.raises(ppy.RemoteMethodNotFound):
                await client.call("nope.nope")
            assert await client.call("aio.double", 3) == 6

    asyncio.run(run())


def test_async_notify(server: Server) -> None:
    async def run() -> int:
        async with ppy.AsyncClient(server.url) as client:
            await client.notify("state.bump", "async-note")
            for _ in range(100):
                got: int = await client.call("state.count", "async-note")
                if got:
                    return got
                await asyncio.sleep(0.02)
        return 0

    assert asyncio.run(run()) == 1


def test_async_connect_error_and_bad_scheme() -> None:
    async def run() -> None:
        client = ppy.AsyncClient(f"tcp://127.0.0.1:{free_port()}")
        with pytest.raises(ppy.ConnectError):
            await client.call("rpc.ping")

    asyncio.run(run())
    with pytest.raises(ppy.ClientError, match=r"use ppy\.Client for http"):
        ppy.AsyncClient("http://127.0.0.1:1")


def test_async_reconnect_after_restart_and_in_flight_calls_fail_cleanly() -> None:
    port = free_port()
    first = server_on(port, http=True)

    async def run() -> None:
        async with ppy.AsyncClient(f"tcp://127.0.0.1:{port}") as client:
            assert await client.call("aio.double", 1) == 2
            in_flight = asyncio.ensure_future(client.call("slow.asleep", 5000))
            await asyncio.to_thread(wait_inflight, first, 1)
            await asyncio.to_thread(first.stop, signal.SIGKILL)  # a crash: the call cannot be answered
            with pytest.raises(ppy.ConnectError):
                await in_flight
            second = await asyncio.to_thread(server_on, port)
            try:
                assert await client.call("aio.double", 2) == 4
                await asyncio.to_thread(second.stop)  # a clean restart between calls
                third = await asyncio.to_thread(server_on, port)
                try:
                    assert await client.call("aio.double", 3) == 6  # transparent
                finally:
                    await asyncio.to_thread(third.stop)
            finally:
                await asyncio.to_thread(second.stop)

    try:
        asyncio.run(run())
    finally:
        first.stop()


def test_blocking_client_is_usable_from_threads_one_client_each(server: Server) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            with ppy.Client(server.url) as client:
                for i in range(20):
                    assert client.call("aio.double", n * 100 + i) == 2 * (n * 100 + i)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


def test_results_of_extra_types_arrive_as_json(url: str) -> None:
    expected: dict[str, Any] = {"a_tuple": [1, "two", 3.5], "a_decimal": "12.340", "some_bytes": "AP9oaQ==",
                                "a_date": "2024-05-17", "an_enum": [1, "high"]}
    with ppy.Client(url) as client:
        for func, value in expected.items():
            assert client.call(f"results.{func}") == value
