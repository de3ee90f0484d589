"""ppy: call plain Python functions from PHP (or anything with a socket or HTTP).

The public API is pinned by ``tests/test_public_api.py``.
"""

from __future__ import annotations

__version__ = "0.1.0"

import typing as _typing

if _typing.TYPE_CHECKING:
    from ppy.client.aio import AsyncClient
    from ppy.client.blocking import Client
    from ppy.client.errors import (
        ClientError,
        ClientTimeout,
        ConnectError,
        RemoteApplicationError,
        RemoteCancelled,
        RemoteError,
        RemoteInternalError,
        RemoteInvalidParams,
        RemoteInvalidRequest,
        RemoteMethodNotFound,
        RemoteOverloaded,
        RemoteParseError,
        RemoteTimeout,
        RemoteUnauthorized,
        RemoteWorkerCrashed,
    )
    from ppy.config import Config

__all__ = [
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

#: Where each public name lives.  They load on first use (PEP 562), so processes that never touch the
#: clients (``--isolate`` workers, ``--workers`` children, ``ppy ls``) do not pay ~60 ms of imports
#: (asyncio, http.client, ssl) at every start.
_LAZY = {name: "ppy.client.errors" for name in __all__ if name.startswith(("ClientE", "ClientT", "Conn", "Remote"))}
_LAZY.update(AsyncClient="ppy.client.aio", Client="ppy.client.blocking", Config="ppy.config")


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ppy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
