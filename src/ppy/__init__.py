"""ppy: call plain Python functions from PHP (or anything with a socket or HTTP).

The public API is pinned by ``tests/test_public_api.py``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ppy.client.aio import AsyncClient
from ppy.client.blocking import Client
from ppy.client.errors import (
    ClientError,
    ClientTimeout,
    ConnectError,
    RemoteApplicationError,
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
