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

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCode:
    """One row of the table every error code of ppy is derived from."""

    code: int  # the JSON-RPC error code
    outcome: str  # its name: the metrics ``outcome`` label, the client's class, the docs
    http_status: int  # what HTTP answers with
    meaning: str


#: The one table of error codes.  The exception classes below, the Python client's Remote* classes,
#: the metrics' outcome labels and the PHP client's class map (checked by a test) derive from it.
CODES: tuple[ErrorCode, ...] = (
    ErrorCode(-32700, "parse_error", 400, "request bytes are not JSON"),
    ErrorCode(-32600, "invalid_request", 400, "not a JSON-RPC 2.0 request, frame too large, too deep"),
    ErrorCode(-32601, "method_not_found", 404, "no such entry/func, or not exposed"),
    ErrorCode(-32602, "invalid_params", 400, "signature or type mismatch"),
    ErrorCode(-32603, "internal_error", 500, "result not encodable, module failed to import"),
    ErrorCode(-32000, "application_error", 500, "the user's function raised"),
    ErrorCode(-32001, "timeout", 504, "ran past its deadline"),
    ErrorCode(-32002, "overloaded", 503, "too many calls in flight or connections open, or shutting down"),
    ErrorCode(-32003, "unauthorized", 401, "token required and missing or wrong"),
    ErrorCode(-32004, "worker_crashed", 500, "the process running the call died"),
    # 499 is nginx's "client closed request": nobody reads it, but logs show why.
    ErrorCode(-32005, "cancelled", 499, "the client cancelled the call (rpc.cancel)"),
)
CODE_BY_NUMBER: dict[int, ErrorCode] = {row.code: row for row in CODES}


class PpyError(Exception):
    """An error with a JSON-RPC code, a message for humans and optional data."""

    code: int = -32603
    http_status: int = 500

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.http_status = CODE_BY_NUMBER[cls.code].http_status  # from the table, never written twice

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data: dict[str, Any] = dict(data) if data else {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ParseError(PpyError):
    code = -32700


class InvalidRequest(PpyError):
    code = -32600


class MethodNotFound(PpyError):
    code = -32601


class InvalidParams(PpyError):
    code = -32602


class InternalError(PpyError):
    code = -32603


class ApplicationError(PpyError):
    code = -32000


class CallTimeout(PpyError):
    code = -32001


class Overloaded(PpyError):
    code = -32002


class Unauthorized(PpyError):
    code = -32003


class WorkerCrashed(PpyError):
    code = -32004


class Cancelled(PpyError):
    code = -32005


ERROR_BY_CODE: dict[int, type[PpyError]] = {cls.code: cls for cls in PpyError.__subclasses__()}
assert set(ERROR_BY_CODE) == set(CODE_BY_NUMBER), "every code of CODES has exactly one PpyError class"


class ProtocolError(Exception):
    """A framing error from a codec: the connection cannot go on as it is.

    ``error`` is what to answer with (when an answer can still be framed) and
    ``fatal`` says whether the connection must be closed afterwards.
    """

    def __init__(self, error: PpyError, *, fatal: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.fatal = fatal
