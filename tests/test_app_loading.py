"""App loading under hostile modules: PEP 562 ``__getattr__``, imports that raise anything or hang.

A broken module costs its own entry (logged, listed as failed by ``ppy ls``); the rest serves,
``--reload`` keeps watching, and SIGTERM still ends the server.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import ppy
from conftest import PPY, ROOT, Server

pytestmark = pytest.mark.timeout(90)

GOOD = '''
def hello() -> str:
    return "hello"
'''

LAZY = '''
def real() -> str:
    return "real"


__all__ = ["real", "lazy"]


def __getattr__(name):
    raise KeyError(name)  # PEP 562, misbehaving: listing functions must never call it
'''

EXITS = '''
import sys

sys.exit("no config file")
'''

BAD_STR = '''
class Weird(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


raise Weird()
'''

HANGS = '''
import time

time.sleep(3600)


def never() -> str:
    return "never"
'''


def make_app(folder: Path, **modules: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in modules.items():
        (folder / f"{name}.py").write_text(text)
    return folder


def wait_for(predicate, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_module_getattr_is_never_called_and_broken_imports_cost_only_their_entry(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", good=GOOD, lazy=LAZY, exits=EXITS, bad_str=BAD_STR)
    with Server(app) as server:
        with ppy.Client(server.url) as client:
            assert client.call("good.hello") == "hello"
            assert client.call("lazy.real") == "real"  # served; "lazy" (only via __getattr__) is not
            for method in ("exits.x", "bad_str.x"):
                with pytest.raises(ppy.RemoteError) as info:
                    client.call(method)
                assert "failed to import" in info.value.message
        out = server.output()
        assert "'exits' failed to import: SystemExit: no config file" in out
        assert "'bad_str' failed to import: Weird: <its message cannot be shown" in out
    listing = subprocess.run([*PPY, "ls", str(app)], capture_output=True, text=True, timeout=60, cwd=ROOT,
                             env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert listing.returncode == 0, listing.stderr
    assert "lazy.real" in listing.stdout and "good.hello" in listing.stdout
    assert "'exits' failed to import" in listing.stderr and "'bad_str' failed to import" in listing.stderr


def test_a_module_that_hangs_at_import_is_marked_failed_after_the_import_timeout(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", good=GOOD, hangs=HANGS)
    with Server(app, "--import-timeout", "1", "--timeout", "2") as server:
        with ppy.Client(server.url) as client:
            assert client.call("good.hello") == "hello"
            with pytest.raises(ppy.RemoteError) as info:
                client.call("hangs.never")
            assert "did not finish within 1 s (--import-timeout)" in info.value.message
        assert server.stop(timeout=10) == 0  # the hung import thread does not hold the exit


def test_reload_survives_getattr_and_hanging_modules_and_sigterm_still_exits(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", good=GOOD)
    server = Server(app, "--reload", "--import-timeout", "1", "--timeout", "2")
    try:
        (app / "lazy.py").write_text(LAZY)
        (app / "hangs.py").write_text(HANGS)
        with ppy.Client(server.url) as client:
            def has(method: str) -> bool:
                try:
                    client.call(method)
                    return True
                except ppy.RemoteError:
                    return False
            wait_for(lambda: has("lazy.real"))
            wait_for(lambda: "did not finish within 1 s" in server.output())
            (app / "later.py").write_text(GOOD)  # the watcher still runs after both
            wait_for(lambda: has("later.hello"))
            (app / "hangs.py").write_text(HANGS + "\n# touched: a rebuild stuck in the import again\n")
        assert server.stop(timeout=10) == 0
    finally:
        server.stop()
