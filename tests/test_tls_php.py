"""The PHP client over ``tls://`` against a real ``ppy serve --tls-port``, run by the real php binary.

Verified by default (wrong or missing CA, wrong host name: ``Ppy\\ConnectionException`` with OpenSSL's
reason), unverified only when asked, client certificates for mutual TLS, and persistent sockets that
survive PHP requests but are never shared between different TLS settings.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, free_port, require_tool
from test_tls import Pki, TlsServer, make_pki

pytestmark = pytest.mark.timeout(120)

AUTOLOAD = ROOT / "clients" / "php" / "autoload.php"

SCENARIOS = r"""<?php
require getenv('PPY_AUTOLOAD');
$port = getenv('PPY_TLS_PORT');
$uri = "tls://127.0.0.1:$port";
$keep = [];  // live clients keep their persistent stream resources listed by get_resources()
function attempt(string $uri, array $tls): array {
    global $keep;
    try {
        $keep[] = $client = new Ppy\Client($uri, ['tls' => $tls]);
        return ['ok' => $client->call('h.hello')];
    } catch (Ppy\ConnectionException $e) {
        return ['error' => $e->getMessage()];
    }
}
$out = [];
foreach (json_decode(getenv('PPY_CASES'), true) as $name => $case) {
    $out[$name] = attempt($case['uri'] ?? $uri, $case['tls']);
}
$out['persistent'] = count(get_resources('persistent stream'));
echo json_encode($out);
"""

PAGE = r"""<?php
require getenv('PPY_AUTOLOAD');
$client = new Ppy\Client('tls://127.0.0.1:' . getenv('PPY_TLS_PORT'), ['tls' => ['cafile' => getenv('PPY_CA')]]);
$result = $client->call('h.hello');
$local = array_values(array_map(fn ($s) => stream_socket_get_name($s, false), get_resources('persistent stream')));
echo json_encode(['result' => $result, 'local' => $local]);
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other"), name="someone-else")


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[TlsServer]:
    srv = TlsServer(pki)
    yield srv
    srv.stop()


def run_php(tmp_path: Path, port: int, cases: dict[str, dict[str, object]]) -> dict[str, object]:
    php = require_tool("php")
    script = tmp_path / "scenarios.php"
    script.write_text(SCENARIOS)
    env = {"PATH": "/usr/bin:/bin", "PPY_AUTOLOAD": str(AUTOLOAD), "PPY_TLS_PORT": str(port),
           "PPY_CASES": json.dumps(cases)}
    done = subprocess.run([php, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_php_verifies_by_default(server: TlsServer, pki: Pki, other: Pki, tmp_path: Path) -> None:
    out = run_php(tmp_path, server.tls_port, {
        "verified": {"tls": {"cafile": str(pki.ca)}},
        "system_cas": {"tls": {}},
        "wrong_ca": {"tls": {"cafile": str(other.ca)}},
        "wrong_name": {"tls": {"cafile": str(pki.ca), "peer_name": "db.example"}},
        "unverified": {"tls": {"verify_peer": False, "verify_peer_name": False}},
        "verified_again": {"tls": {"cafile": str(pki.ca)}},
    })
    assert out["verified"] == {"ok": "hello, world."}
    for case in ("system_cas", "wrong_ca"):
        error = out[case]["error"]  # type: ignore[index]
        assert "certificate verify failed" in error and "cafile" in error, error
        assert f"tls://127.0.0.1:{server.tls_port}/" not in error  # the persistent-key suffix is not shown
    assert "did not match expected name" in out["wrong_name"]["error"]  # type: ignore[index]
    assert out["unverified"] == {"ok": "hello, world."}
    assert out["verified_again"] == {"ok": "hello, world."}
    # Persistent sockets are keyed by TLS settings: the wrong-CA clients never got the verified socket,
    # and the verified one was reused (two sockets: verified and unverified).
    assert out["persistent"] == 2


def test_php_plaintext_server_port_fails_clearly(server: TlsServer, pki: Pki, tmp_path: Path) -> None:
    out = run_php(tmp_path, server.port, {"plain": {"tls": {"cafile": str(pki.ca)}}})
    assert "TLS connection" in out["plain"]["error"]  # type: ignore[index]


def test_php_mutual_tls(pki: Pki, other: Pki, tmp_path: Path) -> None:
    with TlsServer(pki, "--tls-client-ca", str(pki.ca)) as srv:
        out = run_php(tmp_path, srv.tls_port, {
            "no_cert": {"tls": {"cafile": str(pki.ca)}},
            "other_ca_cert": {"tls": {"cafile": str(pki.ca), "local_cert": str(other.client)}},
            "cert": {"tls": {"cafile": str(pki.ca), "local_cert": str(pki.client)}},
        })
    assert out["cert"] == {"ok": "hello, world."}
    for case in ("no_cert", "other_ca_cert"):
        assert "error" in out[case], out  # type: ignore[operator]


def test_php_rejects_bad_tls_options(tmp_path: Path) -> None:
    php = require_tool("php")
    code = ("require getenv('PPY_AUTOLOAD'); foreach ([['tcp://127.0.0.1:1', ['cafile' => '/etc/hosts']], "
            "['tls://127.0.0.1:1', ['verify_per' => false]], ['tls://127.0.0.1:1', ['cafile' => '/nope.pem']], "
            "['tls://127.0.0.1', []]] as [$u, $t]) { try { new Ppy\\Client($u, ['tls' => $t]); echo \"accepted\\n\"; }"
            " catch (InvalidArgumentException $e) { echo $e->getMessage(), \"\\n\"; } }")
    done = subprocess.run([php, "-r", code], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "PPY_AUTOLOAD": str(AUTOLOAD)})
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and "accepted" not in lines, done.stdout + done.stderr
    assert "applies to tls://" in lines[0] and "unknown 'tls' option 'verify_per'" in lines[1]
    assert "readable PEM file" in lines[2] and "tls://host:port" in lines[3]


def test_php_tls_socket_persists_across_php_requests(server: TlsServer, pki: Pki, tmp_path: Path) -> None:
    php = require_tool("php")
    (tmp_path / "page.php").write_text(PAGE)
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "PPY_AUTOLOAD": str(AUTOLOAD), "PPY_TLS_PORT": str(server.tls_port),
           "PPY_CA": str(pki.ca)}
    proc = subprocess.Popen([php, "-S", f"127.0.0.1:{port}", "-t", str(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        pages = [fetch(f"http://127.0.0.1:{port}/page.php") for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(10)
    assert [p["result"] for p in pages] == ["hello, world."] * 3
    assert len(pages[0]["local"]) == 1 and all(p["local"] == pages[0]["local"] for p in pages), pages


def fetch(url: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body: dict[str, object] = json.loads(resp.read())
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
