"""ppy is typed for its users: ``py.typed`` ships, so mypy checks user code against ppy's own hints."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

USER_CODE = '''\
import ppy

client = ppy.Client("tcp://127.0.0.1:1")
reveal_type(client)
reveal_type(ppy.RemoteTimeout)
client.call(42)  # a method name is a str: mypy must say so
'''


def test_mypy_sees_ppy_types_in_user_code(tmp_path: Path) -> None:
    user = tmp_path / "user.py"
    user.write_text(USER_CODE)
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                          "--config-file", "/dev/null", str(user)], capture_output=True, text=True, timeout=110,
                         cwd=tmp_path)
    text = out.stdout + out.stderr
    assert "missing library stubs or py.typed marker" not in text, text
    assert 'Revealed type is "ppy.client.blocking.Client"' in text, text
    assert "ppy.client.errors.RemoteTimeout" in text, text
    assert 'Argument 1 to "call" of "Client" has incompatible type "int"; expected "str"' in text, text


def test_py_typed_is_in_the_wheel(tmp_path: Path) -> None:
    assert (ROOT / "src" / "ppy" / "py.typed").is_file()
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=110)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("ppy-*.whl"))
    assert "ppy/py.typed" in zipfile.ZipFile(wheel).namelist()
