"""The public API, pinned (as httpx's tests/test_exported_members.py does).

Changing ``ppy.__all__`` is a deliberate act: update the list below in the
same commit, and the docs with it.
"""

from __future__ import annotations
import __future__

import types

import ppy
from ppy.errors import ERROR_BY_CODE

PUBLIC = [
    "AsyncClient",
    "Client",
    "ClientError",
    "ClientTimeout",
    "Config",
    "ConnectError",
    "RemoteApplicationError",
    "RemoteCancelled",
    "RemoteError",
    "RemoteInternalError",
    "RemoteInvalidParams",
    "RemoteInvalidRequest",
    "RemoteMethodNotFound",
    "RemoteOverloaded",
    "RemoteParseError",
    "RemoteTimeout",
    "RemoteUnauthorized",
    "RemoteWorkerCrashed",
    "__version__",
]


def test_all_is_pinned() -> None:
    assert ppy.__all__ == PUBLIC


def test_all_is_sorted_and_every_name_exists() -> None:
    assert ppy.__all__ == sorted(ppy.__all__)
    for name in ppy.__all__:
        assert getattr(ppy, name) is not None, name


def test_every_public_name_of_the_package_is_exported() -> None:
    """Nothing public sneaks into ``ppy`` without being in ``__all__`` (subpackages aside)."""
    for name in ppy.__all__:  # public names load on first use (PEP 562): load them all first
        getattr(ppy, name)
    public = {
        name for name, value in vars(ppy).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and not isinstance(value, __future__._Feature)
    }
    assert public | {"__version__"} == set(ppy.__all__)


def test_version_is_a_plain_version_string() -> None:
    parts = ppy.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_remote_errors_cover_every_error_code_of_the_spec() -> None:
    """``ppy.RemoteError`` subclasses carry ``code``; one per code of docs/protocol.md, section 4."""
    remote = {getattr(ppy, n).code: getattr(ppy, n) for n in PUBLIC if n.startswith("Remote") and n != "RemoteError"}
    assert set(remote) == set(ERROR_BY_CODE) == {
        -32700, -32600, -32601, -32602, -32603, -32000, -32001, -32002, -32003, -32004, -32005}
    for cls in remote.values():
        assert issubclass(cls, ppy.RemoteError) and issubclass(cls, ppy.ClientError)
    err = ppy.RemoteApplicationError(-32000, "boom", {"type": "ValueError"})
    assert (err.code, err.type, err.message) == (-32000, "ValueError", "boom")
    assert issubclass(ppy.RemoteTimeout, ppy.ClientTimeout) and issubclass(ppy.ClientTimeout, TimeoutError)
    assert issubclass(ppy.ConnectError, ConnectionError)


def test_public_names_load_on_first_use_and_unknown_ones_are_attribute_errors() -> None:
    import subprocess
    import sys

    code = ("import sys, ppy; assert 'ppy.client.aio' not in sys.modules; "
            "assert ppy.AsyncClient.__module__ == 'ppy.client.aio'; "
            "assert set(ppy.__all__) <= set(dir(ppy))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    try:
        ppy.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("ppy.NoSuchName did not raise AttributeError")
