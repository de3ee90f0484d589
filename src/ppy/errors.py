"""The one error tree of ppy, translated to each dialect at the edges.

Every error a caller can see is a :class:`PpyError` carrying its JSON-RPC
code, so the lines dialect, HTTP and the legacy dialect render the same value
in their own shape (``error.code``/``message``/``data``, an HTTP status, or the
legacy ``{"data": [], "error": message}``)::

    PpyError (code)
    ├── ParseError              -32700  request bytes are not JSON
    ├── InvalidRequest          -32600  not a JSON-RPC 2.0 request, frame too large, too deep
    ├── MethodNotFound          -32601  no such entry/func, or not exposed
    ├── InvalidParams           -32602  signature or type mismatch (names the parameter)
    ├── InternalError           -32603  result not encodable, module failed to import
    ├── ApplicationError        -32000  the user's function raised (``data.type``)
    ├── CallTimeout             -32001  ran past ``--timeout``
    ├── Overloaded              -32002  too many calls in flight or connections open
    ├── Unauthorized            -32003  token required and missing or wrong
    ├── WorkerCrashed           -32004  the process running the call died
    └── Cancelled               -32005  the client cancelled the call (rpc.cancel)

    ProtocolError               framing errors raised by the sans-I/O codecs;
                                each carries the PpyError to answer with.

Messages always say what was wrong *and* what to do about it.
"""

from __future__ import annotations

from typing import Any


class PpyError(Exception):
    """An error with a JSON-RPC code, a message for humans and optional data."""

    code: int = -32603
    http_status: int = 500

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data: dict[str, Any] = dict(data) if data else {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ParseError(PpyError):
    code = -32700
    http_status = 400


class InvalidRequest(PpyError):
    code = -32600
    http_status = 400


class MethodNotFound(PpyError):
    code = -32601
    http_status = 404


class InvalidParams(PpyError):
    code = -32602
    http_status = 400


class InternalError(PpyError):
    code = -32603
    http_status = 500


class ApplicationError(PpyError):
    code = -32000
    http_status = 500


class CallTimeout(PpyError):
    code = -32001
    http_status = 504


class Overloaded(PpyError):
    code = -32002
    http_status = 503


class Unauthorized(PpyError):
    code = -32003
    http_status = 401


class WorkerCrashed(PpyError):
    code = -32004
    http_status = 500


class Cancelled(PpyError):
    code = -32005
    http_status = 499  # nginx's "client closed request": nobody reads it, but logs show why


ERROR_BY_CODE: dict[int, type[PpyError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        ApplicationError,
        CallTimeout,
        Overloaded,
        Unauthorized,
        WorkerCrashed,
        Cancelled,
    )
}


class ProtocolError(Exception):
    """A framing error from a codec: the connection cannot go on as it is.

    ``error`` is what to answer with (when an answer can still be framed) and
    ``fatal`` says whether the connection must be closed afterwards.
    """

    def __init__(self, error: PpyError, *, fatal: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.fatal = fatal
