"""docs/app-folder.md end to end: what an app folder exposes, how params bind and convert, how results encode.

Every test talks to a real ``ppy serve`` over real sockets.  The app is a tmp copy of
tests/apps/semantics plus what must not live in git: modules that fail to import and
symlinks (inside and outside the app folder).
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import APPS, Server, legacy_frame, recv_all, recv_line

pytestmark = pytest.mark.timeout(60)

SEMANTICS = APPS / "semantics"


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("semantics")
    app = root / "app"
    shutil.copytree(SEMANTICS, app, ignore=shutil.ignore_patterns("__pycache__"))
    (app / "broken_syntax.py").write_text("def fine():\n    return 1\n\n\ndef broken(:\n    pass\n")
    (app / "broken_raise.py").write_text(
        'def never():\n    return "unreachable"\n\n\nraise RuntimeError("database unreachable at import time")\n')
    outside = root / "outside"
    (outside / "pkg").mkdir(parents=True)
    (outside / "leak.py").write_text('def leak():\n    return "leaked"\n')
    (outside / "pkg" / "__init__.py").write_text('def leak():\n    return "leaked"\n')
    (outside / "pkg" / "mod.py").write_text('def leak():\n    return "leaked"\n')
    (app / "outfile.py").symlink_to(outside / "leak.py")  # a file outside
    (app / "outdir").symlink_to(outside / "pkg")  # a folder outside
    (app / "trojan").mkdir()  # a package inside whose __init__.py is outside
    (app / "trojan" / "__init__.py").symlink_to(outside / "leak.py")
    (app / "trojan" / "inner.py").write_text('def leak():\n    return "leaked"\n')
    (app / "inlink.py").symlink_to("helpers.py")  # a file inside (relative link)
    (app / "shoplink").symlink_to("shop")  # a folder inside
    (app / "loop").symlink_to(".")  # a cycle: discovery must not follow it forever
    return app


@pytest.fixture(scope="module")
def server(app_dir: Path) -> Iterator[Server]:
    srv = Server(app_dir, "--timeout", "5")
    yield srv
    srv.stop()


def rpc(server: Server, method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
    """One lines-dialect request on a fresh connection; the decoded reply."""
    request = {"jsonrpc": "2.0", "id": 7, "method": method, "params": [] if params is None else params, **extra}
    with server.connect() as sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply: dict[str, Any] = json.loads(recv_line(sock))
    assert reply["id"] == 7
    return reply


def result(server: Server, method: str, params: Any = None) -> Any:
    reply = rpc(server, method, params)
    assert "error" not in reply, reply
    return reply["result"]


def error(server: Server, method: str, params: Any = None, code: int | None = None) -> dict[str, Any]:
    reply = rpc(server, method, params)
    assert "result" not in reply, reply
    err: dict[str, Any] = reply["error"]
    if code is not None:
        assert err["code"] == code, err
    return err


def legacy_raw(server: Server, payload: dict[str, Any]) -> bytes:
    with server.connect() as sock:
        sock.sendall(legacy_frame(json.dumps(payload).encode()))
        return recv_all(sock)


def legacy(server: Server, entry: str, func: str, param: Any = None) -> dict[str, Any]:
    raw = legacy_raw(server, {"entry": entry, "func": func, "param": [] if param is None else param})
    assert int(float(raw[:11])) == len(raw) - 11
    reply: dict[str, Any] = json.loads(raw[11:])
    return reply


def assert_healthy(server: Server) -> None:
    assert result(server, "rpc.ping") == "pong"
    assert server.proc.poll() is None


def discovered(server: Server) -> dict[str, Any]:
    doc: dict[str, Any] = result(server, "rpc.discover")
    return doc


# -- exposure ------------------------------------------------------------------------------------

def test_public_sync_and_async_functions_are_callable(server: Server) -> None:
    assert result(server, "expose.public") == ["public", 1]
    assert result(server, "expose.public", [5]) == ["public", 5]
    assert result(server, "expose.apublic", {"x": 3}) == ["apublic", 3]
    assert result(server, "aio.double", ["21"]) == 42
    assert legacy(server, "expose", "apublic", [2]) == {"data": ["apublic", 2], "error": ""}


@pytest.mark.parametrize("func", [
    "system",  # from os import system: would run a shell command
    "joined",  # from os.path import join as joined
    "helper",  # a sibling module's function imported by name
    "json",  # a module
    "Widget",  # a class
    "CONSTANT",  # not a function
    "shout",  # a builtin bound to a public name
    "_private",
    "__dunder__",
    "__init__",
    "__class__",
])
def test_non_public_names_are_never_callable(server: Server, func: str) -> None:
    err = error(server, f"expose.{func}", [], code=-32601)
    assert f"expose.{func}" in err["message"]
    reply = legacy(server, "expose", func, ["echo pwned"])
    assert reply["data"] == [] and reply["error"]


def test_imported_system_is_not_run_over_either_dialect(server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    error(server, "expose.system", [f"touch {marker}"], code=-32601)
    legacy(server, "expose", "system", [f"touch {marker}"])
    assert not marker.exists()


def test_dunder_all_limits_exposure(server: Server) -> None:
    assert result(server, "withall.shown") == "shown"
    for name in ("not_listed", "_hidden_anyway", "Thing", "getcwd", "NUMBER", "missing"):
        error(server, f"withall.{name}", code=-32601)
    methods = {m["name"] for m in discovered(server)["methods"]}
    assert {m for m in methods if m.startswith("withall.")} == {"withall.shown"}


def test_discovery_lists_exactly_the_public_functions_of_expose(server: Server) -> None:
    methods = {m["name"] for m in discovered(server)["methods"]}
    assert {m for m in methods if m.startswith("expose.")} == {"expose.public", "expose.apublic",
                                                                "expose.uses_helper"}


def test_sibling_import_by_plain_name(server: Server) -> None:
    assert result(server, "expose.uses_helper", ["x"]) == "helped x"


def test_packages_with_and_without_init(server: Server) -> None:
    assert result(server, "billing.invoice.total", [[1, 2.5], 0.1]) == 3.85  # no __init__.py
    assert result(server, "shop.name") == "shop"  # a package's __init__ is an entry
    assert result(server, "shop.cart.label", ["3"]) == "shop:3"  # relative import inside the package
    assert result(server, "sub.deep.mod.where").endswith(".sub.deep.mod")
    assert legacy(server, "billing.invoice", "total", [[1, 1]]) == {"data": 2.0, "error": ""}


def test_a_folder_without_init_is_not_an_entry(server: Server) -> None:
    err = error(server, "billing.total", code=-32601)
    assert "billing" in err["message"]


@pytest.mark.parametrize("method", [
    "os.system", "sys.exit", "json.loads", "subprocess.run",  # stdlib modules are not entries
    "..h.hello", "../outside.leak", "/etc/passwd.read", "_private.x", "expose._private",
    "h", "expose.", ".expose.public", "expose..public", "1bad.x", "ex-pose.public", "expose.pub lic",
    "ppy_app_0.expose.public", "helpers.__builtins__",
])
def test_entry_validation_lines(server: Server, method: str) -> None:
    error(server, method, ["echo"], code=-32601)


@pytest.mark.parametrize("entry", ["os", "sys", "..", "../outside", "/etc/passwd", "_x", "a..b", "a.", ".a",
                                   "a/b", "a b", "1a", "ppy", "ppy.cli", "subprocess"])
def test_entry_validation_legacy(server: Server, entry: str) -> None:
    reply = legacy(server, entry, "system", ["echo pwned"])
    assert reply["data"] == [] and reply["error"]
    assert_healthy(server)


def test_json_module_in_app_does_not_shadow_the_stdlib(server: Server) -> None:
    assert result(server, "json.mine") == "app json module"  # the app's json.py is the entry "json"
    assert result(server, "usesjson.encode", [{"b": 1, "a": [2]}]) == '{"a": [2], "b": 1}'
    assert "site-packages" not in result(server, "usesjson.which")
    assert not result(server, "usesjson.which").startswith(str(SEMANTICS))
    # The server's own legacy encoder uses the stdlib json too: still byte-identical to the seed.
    raw = legacy_raw(server, {"entry": "json", "func": "mine", "param": []})
    assert raw == legacy_frame(json.dumps({"data": "app json module", "error": ""}).encode())


def test_modules_are_imported_once_and_cached(server: Server) -> None:
    first = result(server, "state.identity")
    result(server, "state.bump", ["cache"])
    assert result(server, "state.identity") == first
    assert result(server, "state.bump", ["cache"]) == 2  # module state survived between calls


# -- symlinks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["outfile.leak", "outdir.leak", "outdir.mod.leak", "trojan.leak",
                                    "trojan.inner.leak"])
def test_symlink_resolving_outside_is_refused(server: Server, method: str) -> None:
    err = error(server, method, code=-32601)
    assert "outside the app folder" in err["message"] or "not found" in err["message"]
    entry, _, func = method.rpartition(".")
    reply = legacy(server, entry, func)
    assert reply["data"] == [] and reply["error"]
    assert "leaked" not in json.dumps(reply)


def startup_report(server: Server, entry: str) -> str:
    """What the start-up log says about a failed entry: ``ExcType: message (file, line N)``."""
    prefix = f"ppy: warning: entry {entry!r} failed to import: "
    line = next((line for line in server.output().splitlines() if line.startswith(prefix)), None)
    assert line is not None, server.output()
    return line.removeprefix(prefix)


def test_refusal_is_logged_kept_out_of_discovery_and_says_why(server: Server) -> None:
    doc = discovered(server)
    for entry in ("outfile", "outdir", "trojan"):
        assert "resolves outside the app folder" in startup_report(server, entry)
    assert not any(m["name"].startswith(("outfile.", "outdir.", "trojan.")) for m in doc["methods"])
    assert "outside" not in json.dumps(doc) and "x-import-errors" not in doc
    err = error(server, "outfile.leak", code=-32601)
    assert "resolves outside the app folder" in err["message"]


def test_symlink_inside_is_fine(server: Server) -> None:
    assert result(server, "inlink.helper", [1]) == "helped 1"
    assert result(server, "shoplink.cart.label", [2]) == "shop:2"


def test_symlink_cycle_does_not_multiply_entries(server: Server) -> None:
    names = [m["name"] for m in discovered(server)["methods"]]
    assert not any(n.startswith("loop.") for n in names)
    assert len(names) == len(set(names))


# -- import errors -------------------------------------------------------------------------------

def test_import_error_is_reported_on_call(server: Server) -> None:
    err = error(server, "broken_raise.never", code=-32603)
    assert err["message"].startswith("entry 'broken_raise' failed to import: RuntimeError: database unreachable "
                                     "at import time (broken_raise.py, line 5)")
    assert "fix the module" in err["message"]
    assert err["data"]["entry"] == "broken_raise"
    err = error(server, "broken_syntax.fine", code=-32603)
    assert "entry 'broken_syntax' failed to import: SyntaxError: invalid syntax (broken_syntax.py, line 5);" \
        in err["message"]
    assert err["message"].count("line 5") == 1
    reply = legacy(server, "broken_raise", "never")
    assert reply["data"] == [] and "RuntimeError: database unreachable" in reply["error"]


def test_import_errors_logged_not_discovered_and_other_modules_keep_working(server: Server) -> None:
    errors = {entry: startup_report(server, entry) for entry in ("broken_raise", "broken_syntax")}
    assert errors["broken_raise"] == "RuntimeError: database unreachable at import time (broken_raise.py, line 5)"
    assert errors["broken_syntax"] == "SyntaxError: invalid syntax (broken_syntax.py, line 5)"
    assert not any(m["name"].startswith("broken_") for m in discovered(server)["methods"])
    assert result(server, "expose.public") == ["public", 1]
    assert "broken_raise" in server.output()  # the operator sees it in the log too


# -- the seed layout -----------------------------------------------------------------------------

def test_seed_layout_served_from_cwd_app_folder() -> None:
    # `ppy serve` with no APP_DIR in a folder holding app/__init__.py and app/h.py, as in 2013.
    with Server(None, cwd=APPS / "seed") as srv:
        raw = legacy_raw(srv, {"entry": "h", "func": "hello", "param": []})
        assert raw == legacy_frame(b'{"data": "hello, world.", "error": ""}')
        assert result(srv, "h.echo", [1, "a"]) == [1, "a"]
        names = {m["name"] for m in discovered(srv)["methods"]}
        assert names == {"h.hello", "h.echo", "h.boom"}  # app/__init__.py is not an entry


# -- parameters ----------------------------------------------------------------------------------

def test_positional_and_keyword_params_keep_json_types(server: Server) -> None:
    assert result(server, "params.raw", [1, "x", 3.5, None, True]) == {
        "a": ["int", 1], "b": ["str", "x"], "rest": [3.5, None, True], "extra": {}}
    assert result(server, "params.raw", {"a": [1], "z": {"k": False}}) == {
        "a": ["list", [1]], "b": ["NoneType", None], "rest": [], "extra": {"z": {"k": False}}}
    assert legacy(server, "params", "raw", {"b": 2, "a": "1"})["data"] == {
        "a": ["str", "1"], "b": ["int", 2], "rest": [], "extra": {}}


@pytest.mark.parametrize(("method", "params", "needle"), [
    ("params.to_int", [], "missing a required argument: 'n'"),
    ("params.to_int", [1, 2], "too many positional arguments"),
    ("params.to_int", {"n": 1, "m": 1}, "unexpected keyword argument 'm'"),
    ("params.posonly", {"a": 1}, "'a' parameter is positional only"),
    ("params.kwonly", [1, 2], "too many positional arguments"),
    ("params.nothing", [1], "takes no parameters"),
    ("params.nothing", {"x": 1}, "takes no parameters"),
])
def test_binding_errors_are_invalid_params(server: Server, method: str, params: Any, needle: str) -> None:
    err = error(server, method, params, code=-32602)
    assert needle in err["message"]
    assert err["data"]["signature"].startswith(method.rpartition(".")[2] + "(")
    reply = legacy(server, *method.split("."), params)
    assert reply["data"] == [] and needle in reply["error"]


@pytest.mark.parametrize(("method", "params", "expected"), [
    ("params.to_int", ["2"], ["int", 2]),
    ("params.to_int", [2.0], ["int", 2]),
    ("params.to_int", {"n": "-7"}, ["int", -7]),
    ("params.to_float", ["1.5"], ["float", 1.5]),
    ("params.to_float", [2], ["float", 2.0]),
    ("params.to_bool", ["true"], ["bool", True]),
    ("params.to_bool", ["0"], ["bool", False]),
    ("params.to_bool", [1], ["bool", True]),
    ("params.to_str", ["x"], ["str", "x"]),
    ("params.ints", [["1", 2, "3"]], [["int", 1], ["int", 2], ["int", 3]]),
    ("params.point", [{"x": "1", "y": 2}], ["Point", 1, 2]),
    ("params.point", [{"x": 4}], ["Point", 4, 0]),
    ("params.maybe", [], ["NoneType", None]),
    ("params.maybe", [None], ["NoneType", None]),
    ("params.maybe", ["3"], ["int", 3]),
    ("params.union", [], ["int", 5]),
    ("params.union", ["8"], ["int", 8]),
    ("params.color", ["green"], "GREEN"),
    ("params.defaults", {}, "hi world"),
    ("params.defaults", {"times": "2", "sep": "|"}, "hi world|hi world"),
    ("params.defaults", ["bob", "2"], "hi bob hi bob"),
    ("params.kwonly", {"a": "2", "scale": "3"}, 6),
    ("params.kwonly", ["2"], 20),
    ("params.posonly", ["5"], 3),
    ("params.star", ["1", 2], ["int", "int"]),
])
def test_annotated_params_are_converted(server: Server, method: str, params: Any, expected: Any) -> None:
    assert result(server, method, params) == expected


@pytest.mark.parametrize(("method", "params", "param", "needle"), [
    ("params.to_int", ["x"], "n", "Expected `int`, got `str`"),
    ("params.to_int", [2.5], "n", "Expected `int`, got `float`"),
    ("params.to_int", [True], "n", "Expected `int`, got `bool`"),
    ("params.to_str", [5], "s", "Expected `str`, got `int`"),
    ("params.to_bool", ["yes"], "flag", "Expected `bool`, got `str`"),
    ("params.ints", [[1, "x"]], "values", "at `$[1]`"),
    ("params.ints", ["[1]"], "values", "Expected `array`, got `str`"),
    ("params.point", [{"y": 1}], "p", "missing required field `x`"),
    ("params.point", [[1, 2]], "p", "Expected `object`, got `array`"),
    ("params.maybe", ["x"], "n", "Expected `int | null`, got `str`"),
    ("params.color", ["blue"], "c", "Invalid enum value 'blue'"),
    ("params.star", [1, "x"], "values", "Expected `int`, got `str`"),
])
def test_failed_conversion_is_invalid_params_naming_the_parameter(
        server: Server, method: str, params: Any, param: str, needle: str) -> None:
    err = error(server, method, params, code=-32602)
    assert f"parameter {param!r} of {method}" in err["message"]
    assert needle in err["message"]
    assert err["data"]["param"] == param
    reply = legacy(server, *method.split("."), params)
    assert reply["data"] == [] and f"parameter {param!r}" in reply["error"]
    assert_healthy(server)


# -- results -------------------------------------------------------------------------------------

RESULTS: list[tuple[str, Any]] = [
    ("a_tuple", [1, "two", 3.5]),
    ("a_frozenset", ["only"]),
    ("a_datetime", "2024-05-17T13:45:30.123456"),
    ("an_aware_datetime", "2024-05-17T13:45:30Z"),
    ("a_date", "2024-05-17"),
    ("a_time", "13:45:30"),
    ("a_decimal", "12.340"),
    ("a_uuid", "12345678-1234-5678-1234-567812345678"),
    ("an_enum", [1, "high"]),
    ("a_dataclass", {"sku": "A-1", "qty": 2, "when": "2024-01-02"}),
    ("some_bytes", "AP9oaQ=="),
    ("unicode", "héllo ✓"),
    ("nested", {"t": [1, 2], "d": "1.5", "u": ["00000000-0000-0000-0000-000000000001"]}),
    ("bigint", 2**70),
]


@pytest.mark.parametrize(("func", "expected"), RESULTS)
def test_result_types_encode_over_lines(server: Server, func: str, expected: Any) -> None:
    assert result(server, f"results.{func}") == expected


@pytest.mark.parametrize(("func", "expected"), RESULTS)
def test_result_types_encode_over_legacy_byte_for_byte(server: Server, func: str, expected: Any) -> None:
    raw = legacy_raw(server, {"entry": "results", "func": func, "param": []})
    assert raw == legacy_frame(json.dumps({"data": expected, "error": ""}).encode())


def test_set_result_is_a_list(server: Server) -> None:
    assert sorted(result(server, "results.a_set")) == [1, 2, 3]
    assert sorted(legacy(server, "results", "a_set")["data"]) == [1, 2, 3]


def test_unencodable_result_is_an_internal_error_naming_the_type(server: Server) -> None:
    err = error(server, "results.opaque", code=-32603)
    assert "Opaque" in err["message"] and "not JSON-encodable" in err["message"]
    reply = legacy(server, "results", "opaque")
    assert reply["data"] == [] and "Opaque" in reply["error"]
    err = error(server, "results.nan", code=-32603)
    assert "NaN" in err["message"]
    assert_healthy(server)


def test_application_error_carries_type_and_message(server: Server) -> None:
    err = error(server, "errors.declined", ["12"], code=-32000)
    assert err["message"] == "card declined for 12"
    assert err["data"]["type"] == "PaymentDeclined"
    assert "traceback" not in err["data"]  # only with --debug
    assert error(server, "errors.empty_message", code=-32000)["message"] == "ValueError"
    assert error(server, "aio.fails", code=-32000)["data"]["type"] == "KeyError"
    reply = legacy(server, "errors", "declined", [3])
    assert reply == {"data": [], "error": "PaymentDeclined: card declined for 3"}


# -- --legacy-str-params -------------------------------------------------------------------------

def test_legacy_str_params_stringifies_legacy_positional_values_only(app_dir: Path) -> None:
    with Server(app_dir, "--legacy-str-params") as srv:
        values = [1, 2.5, True, None, "x", [1, 2], {"k": 1}]
        reply = legacy(srv, "strparams", "kinds", values)
        assert reply == {"data": [["str", "1"], ["str", "2.5"], ["str", "True"], ["str", "None"], ["str", "x"],
                                  ["str", "[1, 2]"], ["str", "{'k': 1}"]], "error": ""}
        # Keyword params are not positional: untouched, as documented.
        assert legacy(srv, "strparams", "named", {"a": 1})["data"] == [["int", 1], ["NoneType", None]]
        # The lines dialect is unaffected.
        assert result(srv, "strparams.kinds", [1, True]) == [["int", 1], ["bool", True]]
        # Annotated params still convert the strings back.
        assert legacy(srv, "params", "to_int", [5])["data"] == ["int", 5]


def test_without_legacy_str_params_legacy_values_keep_json_types(server: Server) -> None:
    assert legacy(server, "strparams", "kinds", [1, None])["data"] == [["int", 1], ["NoneType", None]]


def test_server_survives_everything_above(server: Server) -> None:
    assert_healthy(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"expose.public","params":[9]}\n')
        assert json.loads(recv_line(sock))["result"] == ["public", 9]
