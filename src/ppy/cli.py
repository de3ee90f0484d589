"""The ``ppy`` command: serve, call, ls (and the subcommands other modules register).

``ppy serve``'s flags are generated from :class:`ppy.config.Config`'s fields;
each is also read from ``PPY_<FLAG>`` (flags win over the environment).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppy import __version__
from ppy import config as cfg
from ppy.client.errors import ClientError, RemoteError


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for f in cfg.fields():
        help_text = f"{f.metadata['help']} (env {cfg.env_name(f.name)})"
        if f.metadata.get("positional"):
            parser.add_argument(f.name, nargs="?", type=Path, default=None, help=help_text)
        elif isinstance(f.default, bool):
            # --flag and --no-flag for every boolean, so scripts keep working when a default flips
            parser.add_argument(cfg.flag_name(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(cfg.flag_name(f.name), dest=f.name, default=argparse.SUPPRESS,
                                type=_flag_type(f),
                                metavar=f.name.upper(), choices=f.metadata.get("choices"), help=help_text)


def _flag_type(f: Any) -> Any:
    """The argparse ``type`` of a Config field: its errors read "argument --port: 'abc' is not a whole number"."""

    def parse(raw: str) -> Any:
        try:
            return cfg.parse_value(f, raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f.name
    return parse


def build_config(args: argparse.Namespace, environ: dict[str, str] | None = None) -> cfg.Config:
    names = {f.name for f in cfg.fields()}
    values = cfg.from_env(environ)
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    config = cfg.Config(**values)
    cfg.validate(config)
    return config


def default_url() -> str:
    if os.environ.get("PPY_URL"):
        return os.environ["PPY_URL"]
    host = os.environ.get("PPY_HOST", "127.0.0.1")
    port = os.environ.get("PPY_PORT", "32123")
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def parse_arg(raw: str) -> Any:
    """``ppy call`` arguments: JSON where they parse (``2``, ``[1,2]``, ``true``), else the plain string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def add_client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="server address (default: PPY_URL, or tcp://PPY_HOST:PPY_PORT)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    parser.add_argument("--token-file", type=Path, default=None, help="file with the server's token")
    parser.add_argument("--ca", type=Path, default=None,
                        help="tls:// and https://: CA file that signed the server's certificate")
    parser.add_argument("--cert", type=Path, default=None, help="tls:// and https://: client certificate (mutual TLS)")
    parser.add_argument("--key", type=Path, default=None, help="private key of --cert (if not in the --cert file)")


def client_from_args(args: argparse.Namespace) -> Any:
    from ppy.client.blocking import Client

    token = cfg.read_token(args.token_file) if args.token_file else None
    return Client(args.url or default_url(), timeout=args.timeout, token=token, ca=args.ca, cert=args.cert,
                  key=args.key)


def cmd_serve(args: argparse.Namespace) -> int:
    from ppy import logs
    from ppy.server.main import StartupError, run

    try:
        config = build_config(args)
    except (ValueError, TypeError) as exc:
        print(f"ppy serve: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_format, access_log=config.access_log)
    try:
        if config.workers > 1:
            from ppy.server.workers.supervisor import supervise

            return supervise(config)
        return run(config)
    except StartupError as exc:
        print(f"ppy serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def cmd_call(args: argparse.Namespace) -> int:
    params: Any = [parse_arg(a) for a in args.args]
    if args.kw:
        if params:
            print("ppy call: give arguments by position or with --kw, not both", file=sys.stderr)
            return 2
        params = {}
        for item in args.kw:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                print(f"ppy call: --kw takes key=value, got {item!r}", file=sys.stderr)
                return 2
            params[key] = parse_arg(raw)
    try:
        with client_from_args(args) as client:
            if client.address.scheme in ("http", "https"):
                result = client.request(args.method, params)
            else:  # a generator's items are printed as they come, one JSON line each
                with client.stream_request(args.method, params) as items:
                    for item in items:
                        print(json.dumps(item, ensure_ascii=False), flush=True)
                    result = items.result
    except RemoteError as exc:
        print(f"ppy call: error {exc.code}: {exc.message}", file=sys.stderr)
        if exc.data:
            print(json.dumps(exc.data, indent=2, ensure_ascii=False), file=sys.stderr)
        return 1
    except (ClientError, ValueError) as exc:
        print(f"ppy call: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from ppy import ls

    if args.app_dir is not None:
        return ls.print_local(args.app_dir)
    try:
        with client_from_args(args) as client:
            doc = client.request("rpc.discover")
    except RemoteError as exc:
        print(f"ppy ls: error {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except ClientError:
        if args.url:
            print(f"ppy ls: cannot reach {args.url}; is `ppy serve` running?", file=sys.stderr)
            return 1
        return ls.print_local(None)
    return ls.print_doc(doc)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ppy", description="Call plain Python functions over TCP, Unix sockets and HTTP.")
    p.add_argument("--version", action="version", version=f"ppy {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve every public function of an app folder")
    _add_config_flags(serve)
    serve.set_defaults(func=cmd_serve)

    call = sub.add_parser("call", help="call a function on a running server and print the result as JSON")
    call.add_argument("method", help='"entry.func", e.g. h.hello')
    call.add_argument("args", nargs="*", help="arguments, parsed as JSON where they parse, else strings")
    call.add_argument("--kw", action="append", metavar="KEY=VALUE", help="keyword argument (repeatable)")
    add_client_args(call)
    call.set_defaults(func=cmd_call)

    ls_cmd = sub.add_parser("ls", help="list exposed functions with their signatures")
    ls_cmd.add_argument("app_dir", nargs="?", type=Path, default=None,
                        help="read this app folder directly (default: ask the server, else ./app or the demo)")
    add_client_args(ls_cmd)
    ls_cmd.set_defaults(func=cmd_ls)

    for extra in _extensions():
        extra(sub)
    return p


def _extensions() -> list[Any]:
    """Subcommands living in their own modules (``ppy bench``, ``ppy stubs``), when present."""
    found = []
    for name in ("ppy.bench_cli", "ppy.stubs"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found.append(module.register)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code
