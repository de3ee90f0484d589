"""``ppy bench``: a load test anyone can run against their own server and function (README.md).

    ppy bench h.hello --connections 32 --duration 10 --pipeline 16 --dialect lines|legacy|http

Each connection keeps ``--pipeline`` calls in flight (lines and HTTP; the
legacy dialect is one connection per call, as the seed's client did) and
times every call from sending its request to reading its reply.  A live
progress display shows calls/s while it runs; the end prints calls/s, errors
and p50/p90/p99/max latency (``--json`` prints the same as one JSON object).

This generator is Python (asyncio; the lines dialect as a buffered protocol
with no task per call), so it shares a core with Python's own overhead: on
one machine it measures what a Python client sees, not the server's
ceiling — ``make bench`` uses a C load generator for that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ppy.cli import default_url, parse_arg
from ppy.client.common import Address, tls_context
from ppy.client.errors import ClientError
from ppy.wire import jsonrpc
from ppy.wire.model import Dialect

DIALECTS = (Dialect.LINES, Dialect.LEGACY, Dialect.HTTP)
#: Seconds a single call may take before the run reports it as stuck rather than waiting forever.
CALL_TIMEOUT = 30.0


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def ok(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def fail(self, seconds: float, why: str) -> None:
        self.latencies.append(seconds)
        self.errors += 1
        if not self.first_error:
            self.first_error = why[:300]

    @property
    def calls(self) -> int:
        return len(self.latencies)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def summary(stats: Stats, seconds: float) -> dict[str, Any]:
    lat = sorted(stats.latencies)
    ms = {f"p{q}_ms": round(percentile(lat, q) * 1000, 3) for q in (50, 90, 99)}
    return {"calls": stats.calls, "errors": stats.errors, "seconds": round(seconds, 3),
            "calls_per_s": round(stats.calls / seconds, 1) if seconds > 0 else 0.0, **ms,
            "max_ms": round(lat[-1] * 1000, 3) if lat else 0.0, "first_error": stats.first_error}


def _is_notification(line: bytes) -> bool:
    try:
        doc = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return False
    return isinstance(doc, dict) and "method" in doc and "id" not in doc


def _reply_error(body: bytes) -> str | None:
    """None when a JSON-RPC reply carries a result, else what went wrong."""
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return f"reply is not JSON: {body[:120]!r}"
    if isinstance(doc, dict) and "result" in doc:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        return f"error {err.get('code')}: {err.get('message')}"
    return f"unexpected reply: {body[:120]!r}"


class Bench:
    def __init__(self, args: argparse.Namespace, host: str, port: int, path: str) -> None:
        self.args, self.host, self.port, self.path = args, host, port, path
        self.stats = Stats()
        self.stop_at = 0.0
        self.ssl: Any = None  # an SSLContext for tls:// and https:// URLs (--ca/--cert/--key)
        params = args.params
        if args.dialect == Dialect.LEGACY:
            entry, _, func = args.method.rpartition(".")
            body = json.dumps({"entry": entry, "func": func, "param": params}).encode()
            size = f"{len(body)}."
            self.request = (size + "0" * (11 - len(size))).encode() + body
        else:
            body = jsonrpc.encode_request(args.method, params, 1)
            if args.dialect == Dialect.LINES:
                self.request = body + b"\n"
            else:
                self.request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def run(self, on_tick: Any = None) -> dict[str, Any]:
        start = time.perf_counter()
        self.stop_at = start + self.args.duration
        workers = [asyncio.create_task(self._connection()) for _ in range(self.args.connections)]
        try:
            while not all(w.done() for w in workers):
                await asyncio.wait(workers, timeout=0.25)
                if on_tick is not None:
                    on_tick(self.stats, time.perf_counter() - start)
        finally:
            for w in workers:
                w.cancel()
        for w in workers:
            if not w.cancelled() and w.exception() is not None:
                raise w.exception()  # type: ignore[misc]
        return summary(self.stats, time.perf_counter() - start)

    async def _connection(self) -> None:
        if self.args.dialect == Dialect.LEGACY:
            while time.perf_counter() < self.stop_at:
                await self._legacy_call()
            return
        if self.args.dialect == Dialect.LINES:
            await self._lines_connection()
            return
        reader, writer = await self._open()
        try:
            sent: list[float] = []
            for _ in range(self.args.pipeline):
                writer.write(self.request)
                sent.append(time.perf_counter())
            while sent:
                body = await asyncio.wait_for(self._read_reply(reader), CALL_TIMEOUT)
                now = time.perf_counter()
                began = sent.pop(0)
                why = _reply_error(body) if body is not None else "connection closed by the server"
                if why is None:
                    self.stats.ok(now - began)
                else:
                    self.stats.fail(now - began, why)
                if body is None:
                    return
                if now < self.stop_at:
                    writer.write(self.request)
                    sent.append(time.perf_counter())
        finally:
            writer.close()

    async def _lines_connection(self) -> None:
        """One lines connection as a protocol: no task or future per call, so the generator's own cost
        stays small next to the server's (and over TLS it decrypts into one reused buffer)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        transport, load = await loop.create_connection(lambda: _LinesLoad(self, done), self.host, self.port,
                                                       ssl=self.ssl, server_hostname=self.host if self.ssl else None)
        try:
            while not done.done():
                await asyncio.wait([done], timeout=1.0)
                if load.sent and time.perf_counter() - load.sent[0] > CALL_TIMEOUT:
                    raise TimeoutError(f"no reply within {CALL_TIMEOUT:g} s")
            done.result()
        finally:
            transport.close()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.ssl is None:
            return await asyncio.open_connection(self.host, self.port)
        return await asyncio.open_connection(self.host, self.port, ssl=self.ssl, server_hostname=self.host)

    async def _read_reply(self, reader: asyncio.StreamReader) -> bytes | None:
        if self.args.dialect == Dialect.LINES:
            line = await reader.readline()
            return line or None
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for row in head.split(b"\r\n")[1:]:
            name, _, value = row.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            return body if b'"error"' in body else b'{"error":{"message":"' + head.split(b"\r\n")[0] + b'"}}'
        return body

    async def _legacy_call(self) -> None:
        began = time.perf_counter()
        reader, writer = await self._open()
        try:
            writer.write(self.request)
            head = await asyncio.wait_for(reader.readexactly(11), CALL_TIMEOUT)
            body = await asyncio.wait_for(reader.readexactly(int(head.split(b".")[0])), CALL_TIMEOUT)
        except (asyncio.IncompleteReadError, ValueError) as exc:
            self.stats.fail(time.perf_counter() - began, f"bad legacy reply: {exc}")
            return
        finally:
            writer.close()
        doc = json.loads(body)
        if doc.get("error") == "":
            self.stats.ok(time.perf_counter() - began)
        else:
            self.stats.fail(time.perf_counter() - began, str(doc.get("error")))


#: Where a lines connection's replies are read into (decrypted, over TLS), shared: each connection
#: copies its bytes out before the loop reads for another.
_READ = memoryview(bytearray(256 * 1024))


class _LinesLoad(asyncio.BufferedProtocol):
    """Keeps ``--pipeline`` lines calls in flight on one connection until the run's end; resolves
    ``done`` when its last reply arrived (or the connection was lost)."""

    def __init__(self, bench: Bench, done: asyncio.Future[None]) -> None:
        self.bench, self.done = bench, done
        self.transport: asyncio.Transport | None = None
        self.sent: deque[float] = deque()  # send times of the calls in flight, oldest first
        self.pending = b""  # the start of a reply line not received whole yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        request = self.bench.request
        now = time.perf_counter()
        for _ in range(self.bench.args.pipeline):
            self.sent.append(now)
        transport.write(request * self.bench.args.pipeline)  # type: ignore[attr-defined]

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ

    def buffer_updated(self, nbytes: int) -> None:
        data = self.pending + bytes(_READ[:nbytes])
        *lines, self.pending = data.split(b"\n")
        if not lines:
            return
        stats, bench, sent = self.bench.stats, self.bench, self.sent
        now = time.perf_counter()
        more = 0
        for line in lines:
            if not sent or (b'"method"' in line and _is_notification(line)):  # rpc.goaway: answers nothing
                continue
            began = sent.popleft()
            why = _reply_error(line)
            if why is None:
                stats.ok(now - began)
            else:
                stats.fail(now - began, why)
            if now < bench.stop_at:
                more += 1
                sent.append(now)
        if more:
            assert self.transport is not None
            self.transport.write(bench.request * more)
        elif not sent and not self.done.done():
            self.done.set_result(None)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        now = time.perf_counter()
        while self.sent:
            self.bench.stats.fail(now - self.sent.popleft(), "connection closed by the server")
        if not self.done.done():
            self.done.set_result(None)


def target(args: argparse.Namespace) -> tuple[str, int, str]:
    """Host, port and HTTP path from --url (or the PPY_* defaults) for the chosen dialect."""
    if args.url:
        url = args.url
    elif args.dialect == Dialect.HTTP:
        import os

        host = os.environ.get("PPY_HOST", "127.0.0.1")
        url = f"http://{host}:{os.environ.get('PPY_HTTP_PORT', '32180')}/rpc"
    else:
        url = default_url()
    parts = urlsplit(url)
    if args.dialect == Dialect.HTTP and parts.scheme not in ("http", "https"):
        raise ValueError(f"--dialect http needs an http:// --url (or https://), got {url!r}")
    if args.dialect != Dialect.HTTP and parts.scheme not in ("tcp", "tls"):
        raise ValueError(f"--dialect {args.dialect} needs a tcp://host:port --url (or tls://host:port), got {url!r}")
    if not parts.hostname or not parts.port:
        raise ValueError(f"--url {url!r} needs a host and a port, e.g. tcp://127.0.0.1:32123")
    return parts.hostname, parts.port, (parts.path or "/rpc")


def cmd_bench(args: argparse.Namespace) -> int:
    for name in ("connections", "pipeline"):
        if getattr(args, name) < 1:
            print(f"ppy bench: --{name} must be at least 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    if not args.duration > 0:
        print(f"ppy bench: --duration must be more than 0 seconds, got {args.duration}", file=sys.stderr)
        return 2
    if args.dialect == Dialect.LEGACY and "." not in args.method:
        print("ppy bench: the legacy dialect needs METHOD as entry.func, e.g. h.hello", file=sys.stderr)
        return 2
    args.params = [parse_arg(a) for a in args.args]
    try:
        host, port, path = target(args)
    except ValueError as exc:
        print(f"ppy bench: {exc}", file=sys.stderr)
        return 2
    bench = Bench(args, host, port, path)
    try:
        bench.ssl = tls_context(Address.parse(args.url or default_url()), ca=args.ca, cert=args.cert, key=args.key)
    except ClientError as exc:
        print(f"ppy bench: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_run_with_display(bench, args))
    except (TimeoutError, OSError) as exc:
        what = "timed out waiting for a reply" if isinstance(exc, TimeoutError) else str(exc)
        print(f"ppy bench: cannot load {host}:{port}: {what}; is `ppy serve` running there?", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(args, result)
    if result["calls"] and result["errors"] == result["calls"]:
        print(f"ppy bench: every call failed; first error: {result['first_error']}", file=sys.stderr)
        return 1
    return 0


async def _run_with_display(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    if args.json or args.quiet:
        return await bench.run()
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{args.method} over {args.dialect}", total=args.duration, rate="")

        def tick(stats: Stats, elapsed: float) -> None:
            rate = stats.calls / elapsed if elapsed > 0 else 0.0
            progress.update(task, completed=min(elapsed, args.duration),
                            rate=f"{stats.calls:,} calls, {rate:,.0f}/s, {stats.errors:,} errors")

        return await bench.run(tick)


def _print_table(args: argparse.Namespace, r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ppy bench {args.method} — {args.dialect}, {args.connections} connections, "
                        f"pipeline {args.pipeline}, {r['seconds']:.1f} s")
    for col in ("calls", "errors", "calls/s", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="right")
    table.add_row(f"{r['calls']:,}", f"{r['errors']:,}", f"{r['calls_per_s']:,.0f}", f"{r['p50_ms']:.2f}",
                  f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.2f}")
    Console().print(table)
    if r["errors"]:
        Console(stderr=True).print(f"first error: {r['first_error']}", markup=False)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="load-test a function on a running server: calls/s and latency")
    p.add_argument("method", help='"entry.func" to call, e.g. h.hello')
    p.add_argument("args", nargs="*", help="arguments, parsed as JSON where they parse, else strings")
    p.add_argument("--url", default=None,
                   help="server (default: tcp://PPY_HOST:PPY_PORT; http://PPY_HOST:PPY_HTTP_PORT/rpc for http)")
    p.add_argument("--dialect", type=Dialect, choices=DIALECTS, default=Dialect.LINES,
                   help="wire dialect to load (default lines)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    p.add_argument("--pipeline", type=int, default=1, help="calls in flight per connection (default 1)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    p.add_argument("--ca", default=None, help="tls:// and https://: CA file that signed the server's certificate")
    p.add_argument("--cert", default=None, help="tls:// and https://: client certificate (mutual TLS)")
    p.add_argument("--key", default=None, help="private key of --cert (if not in the --cert file)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object, no display")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_bench)
