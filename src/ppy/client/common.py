"""What both clients share: server addresses, request building, reply reading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ppy.client.errors import ClientError, RemoteError, from_error_object

DEFAULT_URL = "tcp://127.0.0.1:32123"
#: The notification a server sends on a connection it is about to close (a restart hands over): calls
#: already sent on it are still answered; new calls go to a fresh connection.
GOAWAY = "rpc.goaway"
#: First pause between refused connects; it doubles up to REFUSED_MAX_PAUSE, all within connect_timeout.
REFUSED_FIRST_PAUSE = 0.01
REFUSED_MAX_PAUSE = 0.2


def refused(exc: OSError) -> bool:
    """Nothing was sent: no server listens (yet) at a TCP port, or at a Unix socket path."""
    return isinstance(exc, (ConnectionRefusedError, FileNotFoundError))


def next_pause(pause: float, remaining: float) -> float:
    """The pause before the next connect attempt, never past the connect deadline."""
    return max(0.0, min(pause, remaining))


def is_notification(message: Any) -> bool:
    """A server-sent notification (``rpc.goaway``), not a reply: it has a method and no id."""
    return isinstance(message, dict) and "method" in message and "id" not in message


@dataclass(frozen=True)
class Address:
    scheme: str  # tcp | unix | http | https
    host: str = ""
    port: int = 0
    path: str = ""  # unix socket path, or the HTTP base path

    @classmethod
    def parse(cls, url: str) -> Address:
        parts = urlsplit(url)
        scheme = parts.scheme or "tcp"
        if scheme == "unix":
            path = (parts.netloc + parts.path) if parts.netloc else parts.path
            if not path:
                raise ClientError(f"{url!r} has no socket path; use unix:///path/to/ppy.sock")
            return cls("unix", path=path)
        if scheme in ("tcp", "http", "https"):
            default = 32123 if scheme == "tcp" else 32180 if scheme == "http" else 443
            return cls(scheme, parts.hostname or "127.0.0.1", parts.port or default, parts.path.rstrip("/"))
        raise ClientError(f"unsupported URL scheme {scheme!r} in {url!r}; use tcp://, unix:// or http://")


def build_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | dict[str, Any]:
    if args and kwargs:
        raise ClientError("JSON-RPC passes params either by position or by name, not both; pick one")
    return dict(kwargs) if kwargs else list(args)


def result_of(reply: Any) -> Any:
    """The result of a decoded response object, or the RemoteError it carries."""
    if not isinstance(reply, dict):
        raise RemoteError(-32603, f"malformed reply from server: {reply!r}")
    if "error" in reply:
        raise from_error_object(reply["error"])
    return reply.get("result")


class Namespace:
    """``client.billing.invoice.total(...)`` → ``client.call("billing.invoice.total", ...)``."""

    def __init__(self, caller: Any, prefix: str) -> None:
        self._caller = caller
        self._prefix = prefix

    def __getattr__(self, name: str) -> Namespace:
        if name.startswith("_"):
            raise AttributeError(name)
        return Namespace(self._caller, f"{self._prefix}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._caller.call(self._prefix, *args, **kwargs)
