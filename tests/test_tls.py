"""TLS: ``--tls-port`` (both dialects), ``--https-port``, mutual TLS, SIGHUP reload, protected mode, refusals.

Certificates are made at test time with trustme (a throw-away CA); every test talks to a real
``ppy serve`` over loopback with the real ``ssl`` module on both sides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import http.client
import json
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import ppy
from conftest import DEMO_APP, PPY, ROOT, Server, free_port, legacy_frame
from ppy.client.errors import ConnectError
from probes import call_once

pytestmark = pytest.mark.timeout(120)

HELLO = b'{"jsonrpc":"2.0","method":"h.hello","id":1}\n'


@dataclass
class Pki:
    """A CA, the server's certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""

    ca: Path
    cert: Path
    key: Path
    client: Path  # client certificate and key in one PEM
    ca_obj: trustme.CA

    def server_flags(self) -> list[str]:
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]


def make_pki(folder: Path, name: str = "ppy-test", names: tuple[str, ...] = ("127.0.0.1", "localhost"),
             **issue: object) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name=name)
    server = ca.issue_cert(*names, **issue)  # type: ignore[arg-type]
    client = ca.issue_cert("worker-7.example", common_name="worker-7.example")
    pki = Pki(folder / "ca.pem", folder / "cert.pem", folder / "key.pem", folder / "client.pem", ca)
    ca.cert_pem.write_to_path(str(pki.ca))
    server.private_key_pem.write_to_path(str(pki.key))
    pki.cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    client.private_key_and_cert_chain_pem.write_to_path(str(pki.client))
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other"), name="someone-else")


class TlsServer(Server):
    def __init__(self, pki: Pki, *args: str, https: bool = False, **kwargs: object) -> None:
        self.tls_port = free_port()
        self.https_port = free_port() if https else 0
        super().__init__(DEMO_APP, "--tls-port", str(self.tls_port), "--https-port", str(self.https_port),
                         *pki.server_flags(), *args, **kwargs)  # type: ignore[arg-type]

    def wait_ready(self, timeout: float = 20.0) -> None:
        """The plain ports, then the HTTPS port (the server opens it last)."""
        super().wait_ready(timeout)
        deadline = time.monotonic() + timeout
        while self.https_port:
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline and self.proc.poll() is None, self.output()
                time.sleep(0.05)


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[TlsServer]:
    srv = TlsServer(pki, https=True)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mtls(pki: Pki) -> Iterator[TlsServer]:
    srv = TlsServer(pki, "--tls-client-ca", str(pki.ca), https=True)
    yield srv
    srv.stop()


def client_context(ca: Path | None, client: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if client is not None:
        ctx.load_cert_chain(str(client))
    return ctx


def tls_socket(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def served_cert(port: int) -> bytes:
    """The DER certificate a new connection to ``port`` is shown (no verification: we compare bytes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with tls_socket(port, ctx) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text().split("-----END CERTIFICATE-----")[0]
                                    + "-----END CERTIFICATE-----\n")


def wait_for(check: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- both dialects and HTTPS --------------------------------------------------------------------


def test_lines_dialect_over_tls(server: TlsServer, pki: Pki) -> None:
    with tls_socket(server.tls_port, client_context(pki.ca)) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        for _ in range(2):  # a persistent connection
            sock.sendall(HELLO)
            assert json.loads(read_line(sock))["result"] == "hello, world."


def test_legacy_dialect_over_tls(server: TlsServer, pki: Pki) -> None:
    payload = json.dumps({"entry": "h", "func": "hello", "param": []}).encode()
    with tls_socket(server.tls_port, client_context(pki.ca)) as sock:
        sock.sendall(legacy_frame(payload))
        data = b""
        while len(data) < 11 or len(data) < 11 + int(data[:11].split(b".")[0]):
            chunk = sock.recv(65536)
            assert chunk, f"closed early after {data!r}"
            data += chunk
    assert json.loads(data[11:]) == {"error": "", "data": "hello, world."}


def test_replies_larger_than_the_decryption_buffer_and_many_per_read(server: TlsServer, pki: Pki) -> None:
    """The TLS front ends decrypt into one shared 256 KiB buffer and copy each read out: a request
    larger than it, and 300 pipelined requests in one write, arrive whole and in order."""
    big = "x" * (600 * 1024)
    with tls_socket(server.tls_port, client_context(pki.ca)) as sock:
        sock.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "h.echo", "params": [big]}).encode() + b"\n")
        assert json.loads(read_line(sock)) == {"jsonrpc": "2.0", "id": 1, "result": big}
        sock.sendall(b"".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "h.echo", "params": [f"v{i}"]})
                              .encode() + b"\n" for i in range(300)))
        data = b""
        while data.count(b"\n") < 300:
            chunk = sock.recv(65536)
            assert chunk, data[-200:]
            data += chunk
    assert [json.loads(line)["result"] for line in data.splitlines()] == [f"v{i}" for i in range(300)]
    with ppy.Client(f"https://127.0.0.1:{server.https_port}", ca=pki.ca) as c:
        assert c.call("h.echo", big) == big


def test_plaintext_port_unchanged_next_to_tls(server: TlsServer) -> None:
    with ppy.Client(server.url) as c:
        assert c.call("h.hello") == "hello, world."


def test_http_and_https_side_by_side(pki: Pki) -> None:
    with TlsServer(pki, http=True, https=True) as srv:
        with urllib.request.urlopen(f"{srv.http_url}/call/h/hello", timeout=10) as resp:
            assert json.loads(resp.read()) == {"result": "hello, world."}
        with ppy.Client(f"https://127.0.0.1:{srv.https_port}", ca=pki.ca) as c:
            assert c.call("h.hello") == "hello, world."
        with urllib.request.urlopen(f"{srv.http_url}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        # One app behind both ports: each call is counted once, whichever port it came in on.
        assert 'ppy_calls_total{dialect="http",method="h.hello",outcome="ok"} 2.0' in metrics, metrics
        # Neither HTTP server waits for the other's serving task when draining (each would until the deadline).
        assert srv.stop() == 0
        assert "drain deadline passed" not in srv.log_path.read_text(), srv.log_path.read_text()


def test_sighup_without_tls_is_logged_not_fatal() -> None:
    with Server(DEMO_APP) as srv:
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "nothing to reload" in srv.output(), "the SIGHUP log line")
        with ppy.Client(srv.url) as c:
            assert c.call("h.hello") == "hello, world."


def test_https_routes(server: TlsServer, pki: Pki) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", server.https_port, timeout=10, context=client_context(pki.ca))
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() == b'{"status":"ok"}'
    conn.request("GET", "/call/h/hello")
    assert json.loads(conn.getresponse().read()) == {"result": "hello, world."}
    conn.close()
    with ppy.Client(f"https://127.0.0.1:{server.https_port}", ca=pki.ca) as c:
        assert c.call("h.hello") == "hello, world."


def test_old_tls_versions_are_refused(server: TlsServer, pki: Pki) -> None:
    ctx = client_context(pki.ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point: TLS 1.1 is deprecated
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises(ssl.SSLError):
        tls_socket(server.tls_port, ctx).close()


def test_plaintext_to_tls_port_is_refused_and_server_stays_healthy(server: TlsServer, pki: Pki) -> None:
    for request in (HELLO, legacy_frame(b'{"entry":"h","func":"hello","param":[]}')):
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as sock:
            sock.sendall(request)
            got = b""
            try:
                while chunk := sock.recv(65536):
                    got += chunk
            except ConnectionResetError:
                pass
            assert b"hello" not in got and b"jsonrpc" not in got  # no reply, only (at most) a TLS alert
    with ppy.Client(f"tls://127.0.0.1:{server.tls_port}", ca=pki.ca) as c:
        assert c.call("h.hello") == "hello, world."
    assert server.proc.poll() is None


@pytest.mark.parametrize("port", ["tls_port", "https_port"])
def test_a_client_that_never_finishes_the_handshake_is_closed(pki: Pki, port: str) -> None:
    # --request-timeout bounds the handshake on both TLS ports (asyncio's default would be 60 s, and
    # the socket timeout of 15 s below fails the test first).
    with TlsServer(pki, "--request-timeout", "1", https=True) as srv, \
            socket.create_connection(("127.0.0.1", getattr(srv, port)), timeout=15) as sock:
        sock.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        got = b""
        try:
            while chunk := sock.recv(65536):  # bounded by the socket timeout: the server must close first
                got += chunk
        except ConnectionResetError:
            pass
        assert srv.proc.poll() is None


def test_stalled_handshakes_hold_at_most_max_connections(pki: Pki) -> None:
    """Connections still in their handshake are not counted by --max-connections yet: at that many the
    TLS port accepts no more until one ends (backpressure: the next client waits in the backlog)."""
    with TlsServer(pki, "--max-connections", "3") as srv:
        url = f"tls://127.0.0.1:{srv.tls_port}"
        stalled = [socket.create_connection(("127.0.0.1", srv.tls_port), timeout=10) for _ in range(3)]
        try:
            for sock in stalled:
                sock.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
            def hello() -> object:
                with ppy.Client(url, ca=pki.ca, timeout=20) as client:
                    return client.call("h.hello")

            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(hello)
                with pytest.raises(concurrent.futures.TimeoutError):
                    waiting.result(timeout=1)  # in the backlog behind the three
                with ppy.Client(srv.url) as plain:  # the plaintext port is not held up
                    assert plain.call("h.hello") == "hello, world."
                stalled.pop().close()  # one handshake ends: the waiting client is accepted
                assert waiting.result(timeout=15) == "hello, world."
        finally:
            for sock in stalled:
                sock.close()


# -- the Python clients ---------------------------------------------------------------------------


def test_python_clients_verify_by_default(server: TlsServer, pki: Pki, other_pki: Pki) -> None:
    url = f"tls://127.0.0.1:{server.tls_port}"
    with ppy.Client(url, ca=pki.ca) as c:
        assert c.h.hello() == "hello, world."
    with pytest.raises(ConnectError, match="cannot verify the TLS certificate"):
        ppy.Client(url).call("h.hello")  # the system CAs do not know our test CA
    with pytest.raises(ConnectError, match="cannot verify the TLS certificate"):
        ppy.Client(url, ca=other_pki.ca).call("h.hello")  # wrong CA
    with pytest.raises(ConnectError, match="cannot verify"):
        ppy.Client(f"https://127.0.0.1:{server.https_port}", ca=other_pki.ca).call("h.hello")
    with ppy.Client(url, ssl_context=client_context(pki.ca)) as c:
        assert c.call("h.hello") == "hello, world."

    async def run_async() -> list[str]:
        async with ppy.AsyncClient(url, ca=pki.ca) as ac:
            return list(await asyncio.gather(*(ac.call("h.hello") for _ in range(10))))

    assert asyncio.run(run_async()) == ["hello, world."] * 10

    async def async_wrong_ca() -> None:
        async with ppy.AsyncClient(url, ca=other_pki.ca) as ac:
            await ac.call("h.hello")

    with pytest.raises(ConnectError, match="cannot verify"):
        asyncio.run(async_wrong_ca())


def test_client_tls_options_only_for_tls_urls(pki: Pki) -> None:
    with pytest.raises(ppy.ClientError, match="tls:// and https://"):
        ppy.Client("tcp://127.0.0.1:1", ca=pki.ca)
    with pytest.raises(ppy.ClientError, match="no port"):
        ppy.Client("tls://127.0.0.1", ca=pki.ca)


def test_server_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    elsewhere = make_pki(tmp_path, names=("db.example",))
    with TlsServer(elsewhere) as srv, pytest.raises(ConnectError, match=r"cannot verify.*(mismatch|match)"):
        ppy.Client(f"tls://127.0.0.1:{srv.tls_port}", ca=elsewhere.ca).call("h.hello")


def test_expired_server_certificate_is_refused(tmp_path: Path) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    expired = make_pki(tmp_path, not_before=past, not_after=past + datetime.timedelta(days=1))
    with TlsServer(expired) as srv, pytest.raises(ConnectError, match="expired"):
        ppy.Client(f"tls://127.0.0.1:{srv.tls_port}", ca=expired.ca).call("h.hello")


def test_ppy_call_accepts_tls_options(server: TlsServer, pki: Pki) -> None:
    url = f"tls://127.0.0.1:{server.tls_port}"
    done = subprocess.run([*PPY, "call", "h.hello", "--url", url, "--ca", str(pki.ca)], capture_output=True,
                          text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0 and json.loads(done.stdout) == "hello, world."
    done = subprocess.run([*PPY, "call", "h.hello", "--url", url], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 1 and "cannot verify" in done.stderr


def test_ppy_bench_over_tls(server: TlsServer, pki: Pki) -> None:
    for dialect, url in (("lines", f"tls://127.0.0.1:{server.tls_port}"),
                         ("legacy", f"tls://127.0.0.1:{server.tls_port}"),
                         ("http", f"https://127.0.0.1:{server.https_port}/rpc")):
        done = subprocess.run([*PPY, "bench", "h.hello", "--url", url, "--ca", str(pki.ca), "--dialect", dialect,
                               "--duration", "0.5", "--connections", "2", "--json"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["calls"] > 0 and result["errors"] == 0, (dialect, result)


# -- mutual TLS -------------------------------------------------------------------------------------


def test_mtls_requires_a_client_certificate_from_the_ca(mtls: TlsServer, pki: Pki, other_pki: Pki) -> None:
    url = f"tls://127.0.0.1:{mtls.tls_port}"
    with pytest.raises(ConnectError):
        ppy.Client(url, ca=pki.ca).call("h.hello")  # no client certificate
    with pytest.raises(ConnectError):
        ppy.Client(url, ca=pki.ca, cert=other_pki.client).call("h.hello")  # signed by another CA
    with pytest.raises(ConnectError):
        ppy.Client(f"https://127.0.0.1:{mtls.https_port}", ca=pki.ca).call("h.hello")
    with ppy.Client(url, ca=pki.ca, cert=pki.client) as c:
        assert c.call("h.hello") == "hello, world."
    with ppy.Client(f"https://127.0.0.1:{mtls.https_port}", ca=pki.ca, cert=pki.client) as c:
        assert c.call("h.hello") == "hello, world."
    assert mtls.proc.poll() is None


def test_mtls_client_subject_appears_in_logs(mtls: TlsServer, pki: Pki) -> None:
    with tls_socket(mtls.tls_port, client_context(pki.ca, pki.client)) as sock:
        sock.sendall(b"99999999.00")  # a legacy frame over --max-frame-bytes: a logged protocol error
        sock.recv(65536)
    wait_for(lambda: "CN=worker-7.example" in mtls.output(), "the client certificate's subject in the log")
    assert re.search(r"TLS client [^\n]*CN=worker-7\.example connected to --tls-port from \('127\.0\.0\.1', \d+\)",
                     mtls.output()), mtls.output()
    assert re.search(r"protocol error from \('127\.0\.0\.1', \d+\) \(client certificate [^\n]*CN=worker-7\.example\)",
                     mtls.output()), mtls.output()
    with ppy.Client(f"https://127.0.0.1:{mtls.https_port}", ca=pki.ca, cert=pki.client) as c:
        assert c.call("h.hello") == "hello, world."
    wait_for(lambda: re.search(r"TLS client [^\n]*CN=worker-7\.example connected to --https-port from "
                               r"\('127\.0\.0\.1', \d+\)", mtls.output()) is not None,
             "the HTTPS client certificate's subject in the log")


def test_failed_handshakes_are_logged_with_their_reason(mtls: TlsServer, pki: Pki) -> None:
    for scheme, port in (("tls", mtls.tls_port), ("https", mtls.https_port)):
        url = f"{scheme}://127.0.0.1:{port}"
        with pytest.raises(ConnectError):
            ppy.Client(url, ca=pki.ca).call("h.hello")  # no client certificate
        pattern = rf"connection from \('127\.0\.0\.1', \d+\) on {scheme}://127\.0\.0\.1:{port} failed " \
                  r"before its first request: .*CERTIFICATE"
        wait_for(lambda pattern=pattern: re.search(pattern, mtls.output()) is not None,  # type: ignore[misc]
                 f"the failed {scheme} handshake in the log")
    assert mtls.proc.poll() is None


def test_expired_client_certificate_is_refused(mtls: TlsServer, pki: Pki) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    old = pki.ca_obj.issue_cert("old-client", not_before=past, not_after=past + datetime.timedelta(days=1))
    path = pki.client.parent / "old-client.pem"
    old.private_key_and_cert_chain_pem.write_to_path(str(path))
    with pytest.raises(ConnectError):
        ppy.Client(f"tls://127.0.0.1:{mtls.tls_port}", ca=pki.ca, cert=path).call("h.hello")


# -- SIGHUP reload ---------------------------------------------------------------------------------


def _install(src: Pki, dst: Pki) -> None:
    """Put ``src``'s certificate and key where the server reads ``dst``'s (rename: never half a file)."""
    for a, b in ((src.cert, dst.cert), (src.key, dst.key)):
        tmp = b.with_suffix(".new")
        tmp.write_bytes(a.read_bytes())
        tmp.replace(b)


def test_sighup_reloads_for_new_connections_and_keeps_open_ones(tmp_path: Path) -> None:
    live = make_pki(tmp_path / "live")
    fresh = make_pki(tmp_path / "fresh", name="rotated")
    with TlsServer(live) as srv:
        assert served_cert(srv.tls_port) == der_of(live.cert)
        old = ppy.Client(f"tls://127.0.0.1:{srv.tls_port}", ca=live.ca)
        assert old.call("h.hello") == "hello, world."
        old_sock = old._sock
        _install(fresh, live)
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: served_cert(srv.tls_port) == der_of(fresh.cert), "the new certificate on a new connection")
        with ppy.Client(f"tls://127.0.0.1:{srv.tls_port}", ca=fresh.ca) as new:
            assert new.call("h.hello") == "hello, world."
        assert old.call("h.hello") == "hello, world." and old._sock is old_sock  # same connection, still working
        old.close()
        # A broken file is logged and the last good certificate kept.
        live.cert.write_text("not a certificate\n")
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "TLS reload failed" in srv.output(), "the failed reload in the log")
        assert served_cert(srv.tls_port) == der_of(fresh.cert)
        assert srv.proc.poll() is None


def test_sighup_reloads_the_client_ca(tmp_path: Path) -> None:
    live = make_pki(tmp_path / "live")
    other = make_pki(tmp_path / "other", name="new-clients")
    client_ca = tmp_path / "clients.pem"
    client_ca.write_bytes(live.ca.read_bytes())
    with TlsServer(live, "--tls-client-ca", str(client_ca)) as srv:
        url = f"tls://127.0.0.1:{srv.tls_port}"
        assert call_once(url, "h.hello", ca=live.ca, cert=live.client) == "hello, world."
        client_ca.write_bytes(other.ca.read_bytes())
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in srv.output(), "the reload in the log")
        assert call_once(url, "h.hello", ca=live.ca, cert=other.client) == "hello, world."
        with pytest.raises(ConnectError):
            ppy.Client(url, ca=live.ca, cert=live.client).call("h.hello")


def test_sighup_under_workers_reaches_every_worker(tmp_path: Path) -> None:
    live = make_pki(tmp_path / "live")
    fresh = make_pki(tmp_path / "fresh", name="rotated")
    with TlsServer(live, "--workers", "2", https=True) as srv:
        # Both workers serving first (SO_REUSEPORT spreads 20 connections over both slots): a worker still
        # starting Python would be killed by SIGHUP before it can ignore it, and simply be replaced.
        wait_for(lambda: all(served_cert(srv.tls_port) == der_of(live.cert) for _ in range(20)), "both workers")
        _install(fresh, live)
        srv.proc.send_signal(signal.SIGHUP)
        # SO_REUSEPORT spreads connections by source port: 20 new connections reach both workers.
        wait_for(lambda: all(served_cert(port) == der_of(fresh.cert) for _ in range(20)
                             for port in (srv.tls_port, srv.https_port)),
                 "every worker serving the new certificate on both TLS ports")
        with ppy.Client(f"https://127.0.0.1:{srv.https_port}", ca=fresh.ca) as c:
            assert c.call("h.hello") == "hello, world."
        assert srv.proc.poll() is None


# -- protected mode and start-up refusals ------------------------------------------------------------


def _serve_once(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PPY, "serve", str(DEMO_APP), "--port", str(free_port()), "--http-port", "0", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_protected_mode_per_port(pki: Pki, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-tests")
    tls = ["--tls-port", str(free_port()), *pki.server_flags()]
    ca = ["--tls-client-ca", str(pki.ca)]
    # 192.0.2.1 (TEST-NET-1) is not on this machine: a start that passed the check fails to bind instead.
    refused = _serve_once("--host", "192.0.2.1", *tls, *ca)  # TLS authenticated, plaintext --port is not
    assert refused.returncode != 0 and "refusing" in refused.stderr and "--port" in refused.stderr
    assert "--tls-port" not in refused.stderr.split("would be open")[0]
    refused = _serve_once("--host", "192.0.2.1", "--port", "0", *tls)  # TLS without client certificates
    assert refused.returncode != 0 and "refusing" in refused.stderr and "--tls-port" in refused.stderr
    for ok in (["--port", "0", *tls, *ca], [*tls, "--token-file", str(token)], [*tls, "--insecure"]):
        done = _serve_once("--host", "192.0.2.1", *ok)
        assert done.returncode != 0 and "refusing" not in done.stderr, done.stderr
        assert "cannot listen on 192.0.2.1" in done.stderr


def test_startup_refusals(pki: Pki, other_pki: Pki, tmp_path: Path) -> None:
    port = ["--tls-port", str(free_port())]
    cases = [
        (port, "needs --tls-cert and --tls-key"),
        ([*port, "--tls-cert", str(pki.cert)], "needs --tls-key"),
        (["--https-port", str(free_port()), "--tls-key", str(pki.key)], "needs --tls-cert"),
        ([*port, "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(pki.key)], "cannot read --tls-cert"),
        ([*port, "--tls-cert", str(pki.cert), "--tls-key", str(other_pki.key)], "is not the private key"),
        ([*port, *pki.server_flags(), "--tls-client-ca", str(tmp_path / "nope.pem")], "cannot read --tls-client-ca"),
        (pki.server_flags(), "no TLS port is on"),
        (["--tls-client-ca", str(pki.ca)], "no TLS port is on"),
    ]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    cases.append(([*port, "--tls-cert", str(garbage), "--tls-key", str(pki.key)], "cannot load --tls-cert"))
    for args, message in cases:
        done = _serve_once(*args)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)
    done = _serve_once("--workers", "2", *port, "--tls-cert", str(pki.cert), "--tls-key", str(other_pki.key))
    assert done.returncode != 0 and "is not the private key" in done.stderr


def test_env_vars_configure_tls(pki: Pki) -> None:
    tls_port = free_port()
    env = {"PPY_TLS_PORT": str(tls_port), "PPY_TLS_CERT": str(pki.cert), "PPY_TLS_KEY": str(pki.key)}
    with Server(DEMO_APP, env=env), ppy.Client(f"tls://127.0.0.1:{tls_port}", ca=pki.ca) as c:
        assert c.call("h.hello") == "hello, world."


def test_port_0_turns_plaintext_tcp_off(pki: Pki) -> None:
    srv = TlsServer(pki, "--port", "0", wait=False)
    try:
        def serving() -> bool:
            assert srv.proc.poll() is None, srv.output()
            try:
                return call_once(f"tls://127.0.0.1:{srv.tls_port}", "h.hello", ca=pki.ca) == "hello, world."
            except ConnectError:
                return False

        wait_for(serving, "the TLS port")
        assert "tcp://" not in srv.output()  # the banner lists no plaintext TCP listener
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    finally:
        srv.stop()
