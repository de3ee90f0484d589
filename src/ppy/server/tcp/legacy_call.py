"""Turn a legacy payload into a Call, and errors into the seed's reply shape."""

from __future__ import annotations

import re

from ppy.app.loader import valid_entry
from ppy.errors import ApplicationError, InvalidRequest, MethodNotFound, PpyError
from ppy.wire import jsonvalue
from ppy.wire.model import Call

_FUNC = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def parse_payload(payload: bytes, max_depth: int, str_params: bool = False) -> Call:
    """``{"entry", "func", "param", "token"?}`` → Call, or raise a PpyError saying what is wrong.

    ``str_params`` (``--legacy-str-params``) passes ``str(value)`` of each positional param, as the seed did.
    """
    doc = jsonvalue.decode(payload, max_depth)
    if not isinstance(doc, dict):
        raise InvalidRequest('payload must be a JSON object {"entry": ..., "func": ..., "param": [...]}')
    entry, func = doc.get("entry"), doc.get("func")
    if not isinstance(entry, str) or not entry or not isinstance(func, str) or not func:
        raise InvalidRequest('"entry" and "func" must be non-empty strings, e.g. {"entry": "h", "func": "hello"}')
    if not valid_entry(entry):
        raise MethodNotFound(f"entry {entry!r} is not a module name: use dot-separated names like 'billing.invoice'")
    if not _FUNC.match(func):
        raise MethodNotFound(f"func {func!r} is not a public function name: letters, digits and '_', not leading '_'")
    param = doc.get("param", [])
    if param is None:
        param = []
    if not isinstance(param, (list, dict)):
        raise InvalidRequest('"param" must be an array (positional) or an object (keyword arguments)')
    if str_params and isinstance(param, list):
        param = [str(v) for v in param]
    timeout = doc.get("timeout")
    if timeout is not None and (type(timeout) not in (int, float) or timeout <= 0):
        raise InvalidRequest('"timeout" must be a positive number of seconds')
    token = doc.get("token")
    return Call(f"{entry}.{func}", param, None, False, timeout, token if isinstance(token, str) else None)


def error_message(error: PpyError) -> str:
    """The non-empty ``error`` string of a legacy reply."""
    if isinstance(error, ApplicationError):
        return f"{error.data.get('type', 'Exception')}: {error.message}"
    return error.message or type(error).__name__
