"""Exceptions a client raises.

    ClientError
    ├── ConnectError (also a ConnectionError)  cannot reach the server / connection lost
    ├── ClientTimeout (also a TimeoutError)    no reply within the client's timeout
    └── RemoteError                           the server answered with an error
        ├── RemoteParseError          -32700
        ├── RemoteInvalidRequest      -32600
        ├── RemoteMethodNotFound      -32601
        ├── RemoteInvalidParams       -32602
        ├── RemoteInternalError       -32603
        ├── RemoteApplicationError    -32000  (``type`` is the exception class name)
        ├── RemoteTimeout             -32001  (also a ClientTimeout: the server gave up waiting)
        ├── RemoteOverloaded          -32002
        ├── RemoteUnauthorized        -32003
        ├── RemoteWorkerCrashed       -32004
        └── RemoteCancelled           -32005  (the client cancelled a stream: rpc.cancel)
"""

from __future__ import annotations

from typing import Any

from ppy.errors import CODE_BY_NUMBER


class ClientError(Exception):
    pass


class ConnectError(ClientError, ConnectionError):
    pass


class ClientTimeout(ClientError, TimeoutError):
    pass


class RemoteError(ClientError):
    code = 0

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.data = data if isinstance(data, dict) else ({} if data is None else {"value": data})

    @property
    def type(self) -> str | None:
        """The server-side exception class name for application errors."""
        value = self.data.get("type")
        return value if isinstance(value, str) else None


class RemoteParseError(RemoteError):
    code = -32700


class RemoteInvalidRequest(RemoteError):
    code = -32600


class RemoteMethodNotFound(RemoteError):
    code = -32601


class RemoteInvalidParams(RemoteError):
    code = -32602


class RemoteInternalError(RemoteError):
    code = -32603


class RemoteApplicationError(RemoteError):
    code = -32000


class RemoteTimeout(RemoteError, ClientTimeout):
    """The call ran past its deadline on the server.

    Also a :class:`ClientTimeout` (and so a ``TimeoutError``): a per-call timeout is sent to the
    server too, so whichever side notices first, ``except ppy.ClientTimeout`` catches it.
    """

    code = -32001


class RemoteOverloaded(RemoteError):
    code = -32002


class RemoteUnauthorized(RemoteError):
    code = -32003


class RemoteWorkerCrashed(RemoteError):
    code = -32004


class RemoteCancelled(RemoteError):
    code = -32005


_BY_CODE: dict[int, type[RemoteError]] = {
    cls.code: cls
    for cls in (RemoteParseError, RemoteInvalidRequest, RemoteMethodNotFound, RemoteInvalidParams,
                RemoteInternalError, RemoteApplicationError, RemoteTimeout, RemoteOverloaded,
                RemoteUnauthorized, RemoteWorkerCrashed, RemoteCancelled)
}
assert set(_BY_CODE) == set(CODE_BY_NUMBER), "one Remote* class per code of ppy.errors.CODES"


def from_error_object(error: Any) -> RemoteError:
    if not isinstance(error, dict):
        return RemoteError(-32603, f"malformed error from server: {error!r}")
    code = error.get("code")
    code = code if isinstance(code, int) else -32603
    cls = _BY_CODE.get(code, RemoteError)
    return cls(code, str(error.get("message", "")), error.get("data"))
