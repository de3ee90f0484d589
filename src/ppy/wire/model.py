"""The one call model every dialect decodes to (legacy frame, JSON-RPC line, HTTP).

Dispatch only ever sees a :class:`Call`; each front end renders the outcome
in its own shape.  Model: hypercorn's ``protocol/events.py``.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import msgspec

Params = list[Any] | dict[str, Any]

#: An entry: dot-separated module names, each a letter then letters, digits and ``_``.  Checked before
#: anything a client sent is used to find a module (the app loader checks it again).
ENTRY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*\Z")


class Dialect(enum.StrEnum):
    """Where a call came from: the name used in logs, metrics labels and ``ppy bench --dialect``."""

    LEGACY = "legacy"
    LINES = "lines"
    HTTP = "http"


class Call(msgspec.Struct, gc=False):
    """A ``msgspec.Struct``, not a dataclass: built in C, one per request (a dataclass's generated
    ``__init__`` cost ~250 ns against ~90 ns), and never part of a reference cycle, so the cyclic
    collector need not track it (``gc=False``)."""

    method: str  # "<entry>.<func>", e.g. "billing.invoice.total"
    params: Params = msgspec.field(default_factory=list)
    id: Any = None  # JSON-RPC id (str, int or None); None for legacy and HTTP
    notify: bool = False  # a JSON-RPC notification gets no reply
    timeout: float | None = None  # a client may ask for less than --timeout
    token: str | None = None  # legacy frames carry their token per call
    stream: bool = False  # lines: ``"stream": true`` asks for a generator's items as rpc.item lines

    @property
    def entry(self) -> str:
        return self.method.rpartition(".")[0]

    @property
    def func(self) -> str:
        return self.method.rpartition(".")[2]
