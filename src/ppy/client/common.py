"""What both clients share: server addresses, request building, reply reading."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
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
    scheme: str  # tcp | tls | unix | http | https
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
        if scheme == "tls" and not parts.port:
            raise ClientError(f"{url!r} has no port; use tls://host:PORT with the server's --tls-port")
        if scheme in ("tcp", "tls", "http", "https"):
            default = 32123 if scheme == "tcp" else 32180 if scheme == "http" else 443
            return cls(scheme, parts.hostname or "127.0.0.1", parts.port or default, parts.path.rstrip("/"))
        raise ClientError(f"unsupported URL scheme {scheme!r} in {url!r}; use tcp://, tls://, unix://, http:// or https://")


TLS_SCHEMES = ("tls", "https")


def tls_context(address: Address, *, ca: str | Path | None = None, cert: str | Path | None = None,
                key: str | Path | None = None, ssl_context: ssl.SSLContext | None = None) -> ssl.SSLContext | None:
    """The client context for ``tls://``/``https://`` (None for the others): certificate and host name verified.

    ``ca``: the CA file that signed the server's certificate (default: the system's CAs); ``cert`` and
    ``key``: this client's certificate for a server started with ``--tls-client-ca``; or a ready
    ``ssl_context`` instead of all three.
    """
    given = ca is not None or cert is not None or key is not None
    if address.scheme not in TLS_SCHEMES:
        if given or ssl_context is not None:
            raise ClientError(f"ca=, cert=, key= and ssl_context= apply to tls:// and https:// only, not "
                              f"{address.scheme}://")
        return None
    if ssl_context is not None:
        if given:
            raise ClientError("give either ssl_context= or ca=/cert=/key=, not both")
        return ssl_context
    if key is not None and cert is None:
        raise ClientError("key= needs cert= (the client certificate it belongs to)")
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ClientError(f"cannot load the TLS files (ca={ca}, cert={cert}, key={key}): "
                          f"{getattr(exc, 'reason', None) or exc}") from None
    return ctx


def tls_failure(url: str, exc: ssl.SSLError) -> str:
    """Why a handshake failed, and what to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"cannot verify the TLS certificate of {url}: {exc.verify_message}; pass ca= with the CA that "
                "signed the server's certificate and connect by a name the certificate lists")
    return (f"TLS handshake with {url} failed: {exc.reason or exc}; if the server has --tls-client-ca, pass "
            "cert= and key= with a client certificate signed by that CA")


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
