"""One frozen configuration, declared once.

Each field of :class:`Config` is a ``ppy serve`` flag (``max_inflight`` →
``--max-inflight``) and an environment variable (``PPY_MAX_INFLIGHT``); the
CLI builds its parser from these fields, so an option is never declared
twice.  Flags win over the environment, the environment over the defaults.

The default limits are modelled on Redis, nginx, HAProxy, gRPC and uvicorn
(docs/security.md); each comment says why that value.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class Config:
    """Everything ``ppy serve`` can be told; passed down as one object."""

    app_dir: Path | None = _opt(None, "app folder (default: ./app if it exists, else the demo app)", positional=True)
    host: str = _opt("127.0.0.1", "address to listen on (non-loopback needs --token-file or --insecure)")
    port: int = _opt(32123, "TCP port for the legacy and lines dialects (the seed's port); 0 turns plaintext TCP off")
    http_port: int = _opt(32180, "HTTP port; 0 disables HTTP")
    allowed_hosts: str = _opt("", "extra Host names HTTP answers to, comma-separated (DNS-rebinding guard; "
                              "'*' allows any); IP literals, localhost and --host always work")
    cors_origins: str = _opt("", "web origins (scheme://host[:port]) whose pages may call /rpc and /call from a "
                             "browser, comma-separated, or '*'; other sites' browser requests get 403")
    uds: str | None = _opt(None, "also listen on this Unix domain socket path")
    workers: int = _opt(1, "server processes sharing the ports")
    threads: int = _opt(64, "threads for blocking functions (64 keeps 64 sleeping calls in flight)")
    timeout: float = _opt(30.0, "call deadline in seconds (gRPC-like default); also the drain deadline")
    max_inflight: int = _opt(1024, "calls in flight in the whole server before answering -32002 overloaded")
    # A client pipelining past its window is simply not read until a call finishes (TCP backpressure),
    # so one connection can never hold more than this share of --max-inflight.
    max_conn_inflight: int = _opt(128, "calls in flight per TCP connection (a batch counts as its calls); "
                                  "past it the connection is not read until one finishes")
    max_frame_bytes: int = _opt(16 * MiB, "largest request frame, line or HTTP body in bytes")
    idle_timeout: float = _opt(300.0, "close a persistent connection idle this many seconds (Redis-like)")
    request_timeout: float = _opt(30.0, "seconds to receive a whole request once its first byte arrived")
    send_timeout: float = _opt(30.0, "abort a connection whose waiting replies (over 1 MiB, or any at close) "
                               "do not drain for this many seconds")
    max_connections: int = _opt(1024, "open connections before new ones are refused (nginx worker_connections)")
    max_depth: int = _opt(64, "deepest JSON nesting accepted in a request")
    max_batch: int = _opt(100, "most requests in one JSON-RPC batch")
    token_file: Path | None = _opt(None, "file holding the token clients must present")
    reload: bool = _opt(False, "re-import app modules when files under the app folder change")
    legacy_str_params: bool = _opt(False, "legacy dialect: pass str(value) of each positional param, as the seed did")
    debug: bool = _opt(False, "send tracebacks to clients in error data")
    log_format: str = _opt("text", "log format", choices=("text", "json"))
    # Off by default: formatting a log line per call costs ~15% of a fast call's server CPU (docs/performance.md).
    access_log: bool = _opt(False, "log one line per call")
    insecure: bool = _opt(False, "allow a non-loopback --host without a token")
    isolate: bool = _opt(False, "run each call in a supervised single-call worker process")
    pool_size: int = _opt(os.cpu_count() or 1, "worker processes with --isolate")
    max_jobs: int = _opt(0, "with --isolate: recycle a worker after this many calls (0: never)")
    max_worker_memory: int = _opt(0, "with --isolate: recycle a worker past this RSS in MB (0: no limit)")
    # TLS (docs/tls.md): a second TCP port and an HTTPS port, off by default; --port stays plaintext.
    tls_port: int = _opt(0, "TCP port serving both dialects over TLS 1.2+ (needs --tls-cert and --tls-key; 0: off)")
    https_port: int = _opt(0, "HTTPS port: the HTTP routes over TLS with the same certificate (0: off)")
    tls_cert: Path | None = _opt(None, "PEM certificate chain for the TLS ports (reloaded on SIGHUP)")
    tls_key: Path | None = _opt(None, "PEM private key of --tls-cert (reloaded on SIGHUP)")
    tls_client_ca: Path | None = _opt(None, "PEM CA certificates: TLS clients must present a certificate "
                                      "signed by one of them (mutual TLS; reloaded on SIGHUP)")
    import_timeout: float = _opt(30.0, "seconds an app module may take to import; past it that entry is "
                                 "marked failed and the rest serves")

    @property
    def token(self) -> str | None:
        """The token from ``token_file``, stripped of surrounding whitespace."""
        if self.token_file is None:
            return None
        return read_token(self.token_file)


def read_token(path: Path) -> str:
    """Read a token file, refusing an empty one (it would let anyone in)."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read --token-file {path}: {exc.strerror}; "
                         "check the path and its permissions") from exc
    if not token:
        raise ValueError(f"--token-file {path} is empty; put a long random token in it (e.g. `openssl rand -hex 32`)")
    return token


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return "PPY_" + name.upper()


def fields() -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(Config)


def parse_value(f: dataclasses.Field[Any], raw: str) -> Any:
    """Turn a flag's or env var's text into the field's type, or raise ValueError."""
    default = f.default
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if isinstance(default, bool) or kind == "bool":
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{env_name(f.name)}={raw!r} is not a boolean; use 1 or 0")
    if kind.startswith("int"):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
    if kind.startswith("float"):
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        if not math.isfinite(number):  # NaN would slip past every "> 0" check; every limit is bounded
            raise ValueError(f"{raw!r} is not a finite number")
        return number
    if kind.startswith("Path"):
        return Path(raw)
    choices = f.metadata.get("choices")
    if choices and raw not in choices:
        raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
    return raw


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``PPY_*`` variables that are set, as field values."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields():
        raw = environ.get(env_name(f.name))
        if raw is not None:
            try:
                values[f.name] = parse_value(f, raw)
            except ValueError as exc:
                raise ValueError(f"{env_name(f.name)}: {exc}") from None
    return values


def validate(config: Config) -> None:
    """Reject values that cannot work, with a message saying what to use."""
    positive = ("port", "workers", "threads", "max_inflight", "max_conn_inflight", "max_frame_bytes", "max_connections",
                "max_depth", "max_batch", "pool_size")
    for name in positive:
        value = getattr(config, name)
        if value < (0 if name == "port" else 1):
            raise ValueError(f"{flag_name(name)} must be a positive number, got {value}")
    for name in ("timeout", "idle_timeout", "request_timeout", "send_timeout", "import_timeout"):
        if getattr(config, name) <= 0:
            raise ValueError(f"{flag_name(name)} must be more than 0 seconds, got {getattr(config, name)}")
    for name in ("port", "http_port", "tls_port", "https_port"):
        if not 0 <= getattr(config, name) <= 65535:
            raise ValueError(f"{flag_name(name)} must be between 0 and 65535, got {getattr(config, name)}")
    if config.max_frame_bytes > 9_999_999_999:
        raise ValueError("--max-frame-bytes cannot exceed the legacy header's 10 digits (9999999999)")
