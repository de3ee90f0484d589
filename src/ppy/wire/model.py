"""The one call model every dialect decodes to (legacy frame, JSON-RPC line, HTTP).

Dispatch only ever sees a :class:`Call`; each front end renders the outcome
in its own shape.  Model: hypercorn's ``protocol/events.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Params = list[Any] | dict[str, Any]


@dataclass(slots=True)
class Call:
    method: str  # "<entry>.<func>", e.g. "billing.invoice.total"
    params: Params = field(default_factory=list)
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
