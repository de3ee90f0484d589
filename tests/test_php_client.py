"""The PHP client (clients/php) against real ``ppy serve`` processes, run by the real php/phpunit.

* ``test_phpunit``: the whole PHPUnit suite (every call style and exception type, timeouts,
  restarts, batches, unicode, 1 MiB payloads, the shared byte vectors, ppy_exchange()).
* ``test_example_page``: examples/php-web served by ``php -S``, fetched over HTTP.
* ``test_stubs_*``: ``ppy stubs php`` output passes ``php -l`` and calls work through it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import APPS, PPY, ROOT, Server, free_port, require_tool

PHP_CLIENT = ROOT / "clients" / "php"
EXAMPLE = ROOT / "examples" / "php-web"
PHP_APP = APPS / "php"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """The three servers the PHPUnit suite expects, as PPY_TEST_* variables."""
    tmp = Path(tempfile.mkdtemp(prefix="ppy-php-"))
    uds = tmp / "ppy.sock"
    token = os.urandom(16).hex()
    token_file = tmp / "token"
    token_file.write_text(token)
    main = Server(PHP_APP, "--uds", str(uds), "--timeout", "5", "--no-access-log")
    secured = Server(PHP_APP, "--token-file", str(token_file), "--no-access-log")
    limits = Server(PHP_APP, "--max-inflight", "1", "--no-access-log")
    try:
        yield {
            "PPY_TEST_PORT": str(main.port),
            "PPY_TEST_UDS": str(uds),
            "PPY_TEST_TOKEN_PORT": str(secured.port),
            "PPY_TEST_TOKEN": token,
            "PPY_TEST_LIMITS_PORT": str(limits.port),
            "PPY_TEST_PYTHON": sys.executable,
            "PPY_TEST_APP": str(PHP_APP),
            "PPY_TEST_VECTORS": str(ROOT / "tests" / "vectors"),
        }
    finally:
        for server in (main, secured, limits):
            server.stop()


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPY_")}
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def test_phpunit(servers: dict[str, str]) -> None:
    require_tool("php")
    phpunit = require_tool("phpunit")
    proc = subprocess.run([phpunit, "-c", str(PHP_CLIENT / "phpunit.xml")], cwd=PHP_CLIENT, env=_env(servers),
                          capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    match = re.search(r"OK \((\d+) tests?, (\d+) assertions?\)", output)
    assert match, f"PHPUnit did not report a clean run (skipped, risky or incomplete tests?):\n{output}"
    assert int(match.group(1)) >= 50, output


class _Php:
    """``php -S`` serving a folder, with the environment the page needs."""

    def __init__(self, docroot: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([require_tool("php"), "-S", f"127.0.0.1:{self.port}", "-t", str(docroot)],
                                     env=_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def get(self, path: str) -> tuple[int, str]:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_example_page(tmp_path: Path) -> None:
    """The seed's scenario end to end: a PHP web page calls Python through ppy and shows the result."""
    require_tool("php")
    with Server(EXAMPLE / "app", "--no-access-log") as server:
        page = _Php(EXAMPLE / "public", {"PPY_HOST": "127.0.0.1", "PPY_PORT": str(server.port)})
        try:
            status, html = page.get("/?name=Zo%C3%AB&numbers=3,4,5")
            assert status == 200, html
            assert "hello, world." in html  # the seed's h.hello through ppy_exchange()
            assert "Hello, Zoë!" in html  # h.greet through Ppy\Client, unicode intact
            assert "mean 4, stdev 1" in html  # Python's statistics module did the maths
            assert "Python 3." in html
            status, html = page.get("/?name=%3Cscript%3E&numbers=1,x")
            assert status == 200, html
            assert "<script>" not in html and "&lt;script&gt;" in html  # escaped, never injected
            assert "InvalidParams" in html or "invalid" in html.lower()  # a clear error for bad input
        finally:
            page.stop()
        # The page says so when the Python side is down, instead of a blank page or a PHP fatal error.
        down = _Php(EXAMPLE / "public", {"PPY_HOST": "127.0.0.1", "PPY_PORT": str(free_port())})
        try:
            status, html = down.get("/")
            assert status == 503, html
            assert "cannot connect" in html
        finally:
            down.stop()


def _stubs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PPY, "stubs", "php", *args], capture_output=True, text=True, timeout=60,
                          env=_env(env or {}), cwd=ROOT)


def _php_run(code: str, env: dict[str, str]) -> str:
    proc = subprocess.run([require_tool("php"), "-r", code], capture_output=True, text=True, timeout=60,
                          env=_env(env))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_stubs_from_a_running_server_lint_and_call(tmp_path: Path) -> None:
    php = require_tool("php")
    with Server(PHP_APP, "--no-access-log") as server:
        gen = _stubs("--namespace", "App\\Python", "--url", server.url)
        assert gen.returncode == 0, gen.stderr
        api = tmp_path / "Api.php"
        api.write_text(gen.stdout)
        lint = subprocess.run([php, "-l", str(api)], capture_output=True, text=True, timeout=30)
        assert lint.returncode == 0, lint.stdout + gen.stdout
        assert "namespace App\\Python;" in gen.stdout
        assert "public function t_greet(string $name, string $punctuation = '!'): string" in gen.stdout
        assert "Greet someone by name." in gen.stdout  # docstrings become PHPDoc
        code = f"""
            require {str(PHP_CLIENT / 'autoload.php')!r};
            require {str(api)!r};
            $api = new App\\Python\\Api(new Ppy\\Client({server.url!r}));
            echo json_encode([
                $api->t_greet('stub'),
                $api->t_greet(name: 'named', punctuation: '?'),
                $api->t_add(2, 3),
                $api->t_scale(['x' => 1, 'y' => 2], 3.0),
                $api->t_paint('red', ['a']),
                $api->t_maybe(),
                $api->t_echo_args(1, 2),
                $api->t_nothing(),
            ]);
            try {{ $api->t_fail('typed'); }} catch (Ppy\\ApplicationException $e) {{ echo ' ', $e->getType(); }}
            $m = new ReflectionMethod($api, 't_add');
            echo ' ', $m->getReturnType(), ' ', $m->getParameters()[0]->getType();
        """
        out = _php_run(code, {})
        assert out == ('["hello, stub!","hello, named?",5,{"x":3,"y":6,"label":""},"red:a",null,'
                       '{"args":[1,2],"kwargs":[]},null] ValueError int int'), out


def test_stubs_from_an_app_folder_match_the_server(tmp_path: Path) -> None:
    require_tool("php")
    local = _stubs(str(PHP_APP))
    assert local.returncode == 0, local.stderr
    with Server(PHP_APP, "--no-access-log") as server:
        remote = _stubs(env={"PPY_HOST": "127.0.0.1", "PPY_PORT": str(server.port)})
    assert remote.returncode == 0, remote.stderr
    assert local.stdout == remote.stdout
    assert "namespace" not in local.stdout.split("final class")[0].replace("namespaces", "")


def test_stubs_for_the_demo_app_lint(tmp_path: Path) -> None:
    php = require_tool("php")
    out = _stubs("--namespace", "Demo", "--class-name", "Demo", str(ROOT / "src" / "ppy" / "demo_app"))
    assert out.returncode == 0, out.stderr
    path = tmp_path / "Demo.php"
    path.write_text(out.stdout)
    lint = subprocess.run([php, "-l", str(path)], capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + out.stdout
    assert "function billing_invoice_total(array $lines, int $vat_percent = 0): array" in out.stdout


def test_stubs_read_the_draft07_discovery_schemas(tmp_path: Path) -> None:
    """Decimal (a patterned string), tuples (draft-07 ``items`` lists), recursive types (``definitions``)."""
    php = require_tool("php")
    out = _stubs("--namespace", "Kinds", "--class-name", "Kinds", str(APPS / "schemas"))
    assert out.returncode == 0, out.stderr
    path = tmp_path / "Kinds.php"
    path.write_text(out.stdout)
    lint = subprocess.run([php, "-l", str(path)], capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + out.stdout
    assert "@param numeric-string|int|float $amount" in out.stdout
    assert "@param array{int, string} $p Python p: tuple[int, str]" in out.stdout
    assert "@param array{value: int, children?: list<array{value: int," in out.stdout


def test_stubs_errors_are_clear() -> None:
    bad_ns = _stubs("--namespace", "1Bad\\Name", str(PHP_APP))
    assert bad_ns.returncode == 2 and "namespace" in bad_ns.stderr
    missing = _stubs(str(ROOT / "no-such-folder"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    down = _stubs("--url", f"tcp://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "cannot" in down.stderr


def test_stubs_handle_every_parameter_kind(tmp_path: Path) -> None:
    php = require_tool("php")
    gen = _stubs(str(PHP_APP))
    assert gen.returncode == 0, gen.stderr
    api = tmp_path / "Api.php"
    api.write_text(gen.stdout)
    lint = subprocess.run([php, "-l", str(api)], capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + gen.stdout
    assert "public function sig_kw_only(string $label, int $first = 1, int $scale = 10): string" in gen.stdout
    assert "public function sig_pos_only(int $a, int $b = 2): array" in gen.stdout
    assert "public function sig_reserved(string $this_, string $__ppyParams_ = 'p'): string" in gen.stdout
    assert "*\\/ not a comment end" in gen.stdout
    calls = ("$api->sig_pos_only(5), $api->sig_pos_only(5, 6), $api->sig_kw_only('x'),"
             "$api->sig_kw_only(label: 'y', first: 2, scale: 3), $api->sig_var_kw('n', ['k' => '7']),"
             "$api->sig_reserved('a', 'b'), $api->sig_reserved('a'), $api->sig_day(), $api->sig_day('2024-02-29')")
    with Server(PHP_APP, "--no-access-log") as server:
        prelude = (f"require {str(PHP_CLIENT / 'autoload.php')!r}; require {str(api)!r};"
                   f"$api = new Api(new Ppy\\Client({server.url!r}));")
        out = _php_run(prelude + f"echo json_encode([{calls}]);", {})
        assert out == '[[5,2],[5,6],"x:10","y:6",{"name":"n","k":7},"ab","ap","2020-01-02","2024-02-29"]', out
        # *values with a required keyword cannot be one JSON-RPC params value: the method takes params as given.
        assert "public function sig_both(array|object $params = []): string" in gen.stdout
        out = _php_run(prelude + "echo $api->sig_both(['key' => 'k']), ' ';"
                       "try { $api->sig_both([1, 2]); } catch (Ppy\\InvalidParamsException $e) { echo 'invalid'; }", {})
        assert out == "k=0 invalid", out


def test_phpcs_psr12_clean() -> None:
    phpcs = require_tool("phpcs")
    out = subprocess.run([phpcs, "--standard=PSR12", "--report=full", str(PHP_CLIENT)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
