"""README.md command line: ``ppy call``, ``ppy ls``, ``python -m ppy``, ``ppy serve`` flags and PPY_* env vars.

Every command runs as a real subprocess against real servers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ppy
import ppy.config
from conftest import APPS, PPY, ROOT, Server, free_port, legacy_frame, recv_all, recv_line

pytestmark = pytest.mark.timeout(90)

SEMANTICS = APPS / "semantics"
PPY_SCRIPT = Path(sys.executable).parent / "ppy"
#: Wide, uncoloured tables so assertions see whole signatures.
BASE_ENV = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PPY_")}
    full_env.update(BASE_ENV)
    full_env.update(env or {})
    return subprocess.run([*PPY, *args], capture_output=True, text=True, env=full_env, cwd=cwd or ROOT,
                          timeout=timeout)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(SEMANTICS, "--timeout", "5")
    yield srv
    srv.stop()


# -- python -m ppy / ppy --------------------------------------------------------------------------

def test_version_from_python_m_and_the_script() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"ppy {ppy.__version__}"
    script = subprocess.run([str(PPY_SCRIPT), "--version"], capture_output=True, text=True, timeout=30)
    assert script.returncode == 0 and script.stdout.strip() == f"ppy {ppy.__version__}"


def test_no_subcommand_is_a_usage_error() -> None:
    out = run()
    assert out.returncode == 2 and "usage: ppy" in out.stderr


# -- ppy call -------------------------------------------------------------------------------------

def test_call_hello_on_the_demo(demo_server: Server) -> None:
    out = run("call", "h.hello", "--url", demo_server.url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == "hello, world."
    script = subprocess.run([str(PPY_SCRIPT), "call", "h.hello", "--url", demo_server.url], capture_output=True,
                            text=True, timeout=30)
    assert script.returncode == 0 and json.loads(script.stdout) == "hello, world."


def test_call_finds_the_server_from_ppy_port(demo_server: Server) -> None:
    out = run("call", "h.greet", "bob", "2", env={"PPY_PORT": str(demo_server.port)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == "hello, bob. hello, bob."


def test_call_args_are_json_where_they_parse_else_strings(server: Server) -> None:
    out = run("call", "params.raw", "1", '"quoted"', "[1, 2]", "true", "null", "plain text", "2.5", '{"k": 1}',
              "--url", server.url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"a": ["int", 1], "b": ["str", "quoted"],
                                      "rest": [[1, 2], True, None, "plain text", 2.5, {"k": 1}], "extra": {}}


def test_call_keyword_args(server: Server) -> None:
    out = run("call", "params.defaults", "--kw", "name=ann", "--kw", "times=2", "--kw", "sep= | ",
              "--url", server.url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == "hi ann | hi ann"
    out = run("call", "params.raw", "--kw", "a=[1]", "--kw", "z=x=y", "--url", server.url)
    assert json.loads(out.stdout)["extra"] == {"z": "x=y"}  # only the first '=' splits
    assert json.loads(out.stdout)["a"] == ["list", [1]]


def test_call_prints_unicode_and_nested_results_as_json(server: Server) -> None:
    out = run("call", "results.nested", "--url", server.url)
    assert json.loads(out.stdout) == {"t": [1, 2], "d": "1.5", "u": ["00000000-0000-0000-0000-000000000001"]}
    out = run("call", "results.unicode", "--url", server.url)
    assert out.stdout.strip() == '"héllo ✓"'


@pytest.mark.parametrize(("args", "needle"), [
    (["params.defaults", "x", "--kw", "times=2"], "by position or with --kw, not both"),
    (["params.defaults", "--kw", "times"], "--kw takes key=value, got 'times'"),
    (["params.defaults", "--kw", "=2"], "--kw takes key=value"),
])
def test_call_usage_errors(server: Server, args: list[str], needle: str) -> None:
    out = run("call", *args, "--url", server.url)
    assert out.returncode == 2 and needle in out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize(("args", "needle"), [
    (["errors.declined", "5"], "ppy call: error -32000: card declined for 5"),
    (["no.such"], "ppy call: error -32601: method 'no.such' not found"),
    (["expose.system", "true"], "ppy call: error -32601:"),
    (["params.to_int", "x"], "ppy call: error -32602: parameter 'n' of params.to_int"),
    (["params.to_int"], "ppy call: error -32602: params.to_int: missing a required argument: 'n'"),
    (["results.opaque"], "ppy call: error -32603: result is not JSON-encodable"),
])
def test_call_errors_exit_non_zero_with_a_readable_message(server: Server, args: list[str], needle: str) -> None:
    out = run("call", *args, "--url", server.url)
    assert out.returncode == 1
    assert needle in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_call_application_error_shows_its_type(server: Server) -> None:
    out = run("call", "errors.declined", "5", "--url", server.url)
    assert '"type": "PaymentDeclined"' in out.stderr


def test_call_without_a_server(tmp_path: Path) -> None:
    port = free_port()
    out = run("call", "h.hello", "--url", f"tcp://127.0.0.1:{port}")
    assert out.returncode == 1
    assert f"cannot connect to tcp://127.0.0.1:{port}" in out.stderr and "is `ppy serve` running?" in out.stderr
    out = run("call", "h.hello", "--url", f"unix://{tmp_path / 'no.sock'}")
    assert out.returncode == 1 and "cannot connect" in out.stderr


def test_call_bad_url_and_timeout(server: Server) -> None:
    out = run("call", "h.hello", "--url", "ftp://x")
    assert out.returncode == 1 and "unsupported URL scheme 'ftp'" in out.stderr
    out = run("call", "slow.sleep", "3000", "--url", server.url, "--timeout", "0.3")
    assert out.returncode == 1 and "ppy call:" in out.stderr and "Traceback" not in out.stderr


def test_call_with_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-123\n")
    with Server(SEMANTICS, "--token-file", str(token_file)) as srv:
        out = run("call", "aio.double", "2", "--url", srv.url)
        assert out.returncode == 1 and "error -32003" in out.stderr
        out = run("call", "aio.double", "2", "--url", srv.url, "--token-file", str(token_file))
        assert out.returncode == 0 and json.loads(out.stdout) == 4
        out = run("call", "aio.double", "2", "--url", srv.url, "--token-file", str(tmp_path / "missing"))
        assert out.returncode != 0 and "cannot read --token-file" in out.stderr
        assert "Traceback" not in out.stderr


# -- ppy ls ---------------------------------------------------------------------------------------

def test_ls_from_a_running_server(server: Server) -> None:
    out = run("ls", "--url", server.url)
    assert out.returncode == 0, out.stderr
    assert "params.ints" in out.stdout and "ints(values: list[int]) -> list" in out.stdout
    assert "defaults(name: str = 'world', times: int = 1, sep: str = ' ') -> str" in out.stdout
    assert "Greet ``name`` several times." in out.stdout
    assert "expose.system" not in out.stdout


def test_ls_server_found_from_ppy_port(server: Server) -> None:
    out = run("ls", env={"PPY_PORT": str(server.port)})
    assert out.returncode == 0 and "billing.invoice.total" in out.stdout


def test_ls_reports_import_errors(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "good.py").write_text("def ok(n: int) -> int:\n    return n\n")
    (app / "bad.py").write_text("import not_a_module_anywhere\n")
    (app / "outside.py").symlink_to(tmp_path / "elsewhere.py")
    (tmp_path / "elsewhere.py").write_text("def leak() -> str:\n    return 'leaked'\n")
    local = run("ls", str(app))
    assert local.returncode == 0, local.stderr
    assert "good.ok" in local.stdout
    # Failures go to stderr, apart from the table of what can be called.
    assert ("entry 'bad' failed to import: ModuleNotFoundError: No module named 'not_a_module_anywhere' "
            "(bad.py, line 1)") in " ".join(local.stderr.split())
    assert "entry 'outside' failed to import" in local.stderr and "resolves outside the app folder" in local.stderr
    assert "bad" not in local.stdout and "outside" not in local.stdout and "leak" not in local.stdout
    assert "Traceback" not in local.stderr  # one line each; no wall of tracebacks
    with Server(app) as srv:
        remote = run("ls", "--url", srv.url)
        assert "good.ok" in remote.stdout and "bad" not in remote.stdout and "outside" not in remote.stdout


def test_ls_app_dir_argument_reads_the_folder_locally() -> None:
    out = run("ls", str(SEMANTICS), env={"PPY_PORT": str(free_port())})
    assert out.returncode == 0, out.stderr
    assert "shop.cart.label" in out.stdout and "posonly(a: int, /, b: int = 2) -> int" in out.stdout


def test_ls_without_a_server_falls_back_to_dot_app() -> None:
    out = run("ls", env={"PPY_PORT": str(free_port())}, cwd=APPS / "seed")
    assert out.returncode == 0, out.stderr
    for name in ("h.hello", "h.echo", "h.boom"):
        assert name in out.stdout
    assert "billing" not in out.stdout


def test_ls_without_a_server_or_app_folder_shows_the_demo(tmp_path: Path) -> None:
    out = run("ls", env={"PPY_PORT": str(free_port())}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "h.hello" in out.stdout and "billing.invoice" in out.stdout


def test_ls_explicit_url_that_is_down_is_an_error() -> None:
    out = run("ls", "--url", f"tcp://127.0.0.1:{free_port()}")
    assert out.returncode == 1 and "cannot reach" in out.stderr


def test_ls_missing_app_dir_is_an_error(tmp_path: Path) -> None:
    out = run("ls", str(tmp_path / "nope"))
    assert out.returncode == 1 and "does not exist" in out.stderr


# -- ppy serve: flags and environment ---------------------------------------------------------------

DOCUMENTED_FLAGS = ["--host", "--port", "--http-port", "--uds", "--workers", "--threads", "--timeout", "--max-inflight",
              "--max-frame-bytes", "--idle-timeout", "--token-file", "--reload", "--legacy-str-params", "--debug",
              "--log-format", "--isolate", "--pool-size", "--max-jobs", "--max-worker-memory", "--insecure"]


def test_serve_help_lists_every_spec_flag_and_its_env_var() -> None:
    out = run("serve", "--help")
    assert out.returncode == 0
    for flag in DOCUMENTED_FLAGS:
        assert f"{flag} " in out.stdout or f"{flag}\n" in out.stdout, flag
        assert "PPY_" + flag[2:].upper().replace("-", "_") in out.stdout
    for f in ppy.config.fields():
        if not f.metadata.get("positional"):
            assert "--" + f.name.replace("_", "-") in out.stdout


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class EnvServer:
    """A server started without conftest's --port, so PPY_* env vars are the only source; stderr to a file."""

    def __init__(self, log: Path, env: dict[str, str], *args: str, wait_port: int) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PPY_")}
        full_env.update({"PYTHONUNBUFFERED": "1", **env})
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([*PPY, "serve", str(SEMANTICS), *args], env=full_env, cwd=ROOT,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _listening(wait_port):
            assert self.proc.poll() is None, log.read_text()
            time.sleep(0.05)
        assert _listening(wait_port), log.read_text()

    def output_contains(self, needle: str) -> bool:
        for _ in range(100):  # bounded: ~2 s for the log line to be flushed
            if needle in self.log.read_text():
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def env_server(tmp_path: Path) -> Iterator[Callable[..., EnvServer]]:
    started: list[EnvServer] = []

    def start(env: dict[str, str], *args: str, wait_port: int) -> EnvServer:
        srv = EnvServer(tmp_path / f"serve-{len(started)}.log", env, *args, wait_port=wait_port)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def legacy_call(port: int, entry: str, func: str, param: list[object]) -> dict[str, object]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(legacy_frame(json.dumps({"entry": entry, "func": func, "param": param}).encode()))
        reply: dict[str, object] = json.loads(recv_all(sock)[11:])
    return reply


def test_env_vars_configure_serve(env_server: Callable[..., EnvServer]) -> None:
    port = free_port()
    srv = env_server({"PPY_PORT": str(port), "PPY_HTTP_PORT": "0", "PPY_LEGACY_STR_PARAMS": "1",
                      "PPY_TIMEOUT": "0.3", "PPY_ACCESS_LOG": "1"}, wait_port=port)
    assert legacy_call(port, "strparams", "kinds", [1])["data"] == [["str", "1"]]  # PPY_LEGACY_STR_PARAMS
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"slow.asleep","params":[3000]}\n')
        err = json.loads(recv_line(sock))["error"]
    assert err["code"] == -32001 and err["data"]["timeout"] == 0.3  # PPY_TIMEOUT
    assert srv.output_contains("legacy strparams.kinds ok")  # PPY_ACCESS_LOG


def test_flags_win_over_env(env_server: Callable[..., EnvServer]) -> None:
    env_port, flag_port = free_port(), free_port()
    env_server({"PPY_PORT": str(env_port), "PPY_HTTP_PORT": "0", "PPY_LEGACY_STR_PARAMS": "1"},
               "--port", str(flag_port), wait_port=flag_port)
    assert not _listening(env_port)
    assert legacy_call(flag_port, "strparams", "kinds", [1])["data"] == [["str", "1"]]  # env still applies


@pytest.mark.parametrize(("env", "flag", "logged"), [("0", "--access-log", True), ("1", "--no-access-log", False)])
def test_boolean_flag_beats_boolean_env(env_server: Callable[..., EnvServer], env: str, flag: str,
                                        logged: bool) -> None:
    port = free_port()
    srv = env_server({"PPY_PORT": str(port), "PPY_HTTP_PORT": "0", "PPY_ACCESS_LOG": env}, flag, wait_port=port)
    assert legacy_call(port, "aio", "double", [2])["data"] == 4
    assert legacy_call(port, "expose", "public", [])["data"] == ["public", 1]
    assert srv.output_contains("legacy expose.public ok") is logged


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--port", "abc"], {}, "argument --port: 'abc' is not a whole number"),
    (["--timeout", "soon"], {}, "argument --timeout: 'soon' is not a number"),
    (["--timeout", "nan"], {}, "argument --timeout: 'nan' is not a finite number"),
    (["--timeout", "0"], {}, "--timeout must be more than 0 seconds"),
    (["--port", "70000"], {}, "--port must be between 0 and 65535"),
    (["--max-inflight", "0"], {}, "--max-inflight must be a positive number"),
    (["--log-format", "xml"], {}, "argument --log-format: 'xml' is not one of text, json"),
    (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
    ([], {"PPY_PORT": "abc"}, "PPY_PORT: 'abc' is not a whole number"),
    ([], {"PPY_DEBUG": "maybe"}, "PPY_DEBUG='maybe' is not a boolean; use 1 or 0"),
    ([], {"PPY_TIMEOUT": "-1"}, "--timeout must be more than 0 seconds"),
])
def test_bad_values_exit_non_zero_with_a_clear_message(args: list[str], env: dict[str, str], needle: str) -> None:
    out = run("serve", str(SEMANTICS), "--http-port", "0", *args, env=env)
    assert out.returncode != 0
    assert needle in out.stderr
    assert "Traceback" not in out.stderr and "functools" not in out.stderr


def test_missing_app_dir_exits_non_zero() -> None:
    out = run("serve", str(ROOT / "no-such-app"), "--port", str(free_port()), "--http-port", "0")
    assert out.returncode == 1 and "app folder" in out.stderr and "does not exist" in out.stderr


def test_port_in_use_exits_non_zero_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run("serve", str(SEMANTICS), "--port", str(port), "--http-port", "0")
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "pick another --port" in out.stderr
    assert "Traceback" not in out.stderr


def test_second_server_on_a_busy_port_fails_and_the_first_keeps_serving(server: Server) -> None:
    out = run("serve", str(SEMANTICS), "--port", str(server.port), "--http-port", "0")
    assert out.returncode == 1 and "cannot listen" in out.stderr
    assert json.loads(run("call", "aio.double", "3", "--url", server.url).stdout) == 6
