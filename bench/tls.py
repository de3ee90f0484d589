"""TLS cost, in one run: lines ``h.hello`` over ``--tls-port`` vs the plaintext ``--port`` of the same server.

* ``ppy bench`` (its asyncio load generator run under uvloop, lines dialect, 32 connections, one call
  in flight each), with the server's CPU time per call from /proc,
  plaintext and TLS alternated ``--rounds`` times against one ``ppy serve`` so both see the same
  machine load; the table shows the median of the rounds.
* the PHP client: one PHP process making sequential ``Ppy\\Client->call('h.hello')`` calls on its
  persistent connection, ``tcp://`` vs ``tls://`` (handshake once, then only the cipher).

Certificates come from trustme (a throw-away CA, ECDSA P-256 like docs/tls.md's openssl commands).
The server is pinned to core 0 and the load generator to core 1 (``taskset``) when there are two.

Usage: python bench/tls.py [--seconds 5] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trustme

ROOT = Path(__file__).resolve().parent.parent
PHP_LOOP = r"""<?php
require getenv('PPY_AUTOLOAD');
[, $uri, $seconds] = $argv;
$options = str_starts_with($uri, 'tls://') ? ['tls' => ['cafile' => getenv('PPY_CA')]] : [];
$client = new Ppy\Client($uri, $options);
if ($client->call('h.hello') !== 'hello, world.') { exit(1); }
$end = microtime(true) + 0.3;
while (microtime(true) < $end) { $client->call('h.hello'); }
$calls = 0;
$start = microtime(true);
$end = $start + (float) $seconds;
while (microtime(true) < $end) { $client->call('h.hello'); $calls++; }
echo json_encode(['calls' => $calls, 'seconds' => microtime(true) - $start]);
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(core: str, cmd: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", core, *cmd] if taskset and (os.cpu_count() or 1) > 1 else cmd


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ppy serve exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("ppy serve did not start")


#: ``ppy bench`` run under uvloop: asyncio's own TLS transport is pure Python and would make the load
#: generator, not the server, the thing measured.
UVLOOP_BENCH = ("import sys, asyncio, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
                "from ppy.cli import main; sys.exit(main(sys.argv[1:]))")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _bench(url: str, ca: Path, seconds: float, server_pid: int) -> tuple[float, float]:
    """calls/s and the server's CPU microseconds per call."""
    cmd = [sys.executable, "-c", UVLOOP_BENCH, "bench", "h.hello", "--url", url, "--connections", "32",
           "--duration", str(seconds), "--json"]
    if url.startswith("tls://"):
        cmd += ["--ca", str(ca)]
    before = _cpu_seconds(server_pid)
    out = subprocess.run(_pin("1", cmd), capture_output=True, text=True, check=True, cwd=ROOT)
    cpu = _cpu_seconds(server_pid) - before
    result = json.loads(out.stdout)
    if result["errors"]:
        raise SystemExit(f"{url}: {result['errors']} errors: {result['first_error']}")
    return float(result["calls_per_s"]), cpu / max(1, result["calls"]) * 1e6


def _php(uri: str, ca: Path, script: Path, seconds: float) -> float | None:
    php = shutil.which("php")
    if php is None:
        return None
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PPY_AUTOLOAD": str(ROOT / "clients/php/autoload.php"),
           "PPY_CA": str(ca)}
    out = subprocess.run(_pin("1", [php, str(script), uri, str(seconds)]), capture_output=True, text=True,
                         check=True, env=env)
    result = json.loads(out.stdout)
    return float(result["calls"] / result["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ppy-tls-bench-"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    (tmp / "loop.php").write_text(PHP_LOOP)
    port, tls_port = _free_port(), _free_port()
    server = subprocess.Popen(
        _pin("0", [sys.executable, "-m", "ppy", "serve", "--port", str(port), "--http-port", "0", "--tls-port",
                   str(tls_port), "--tls-cert", str(tmp / "cert.pem"), "--tls-key", str(tmp / "key.pem")]),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: dict[str, list[float]] = {"lines tcp": [], "lines tls": [], "php tcp": [], "php tls": []}
    cpu: dict[str, list[float]] = {"lines tcp": [], "lines tls": []}
    try:
        _wait_port(port, server)
        _wait_port(tls_port, server)
        for _ in range(args.rounds):
            for name, url in (("lines tcp", f"tcp://127.0.0.1:{port}"), ("lines tls", f"tls://127.0.0.1:{tls_port}")):
                rate, us = _bench(url, tmp / "ca.pem", args.seconds, server.pid)
                rows[name].append(rate)
                cpu[name].append(us)
            for name, uri in (("php tcp", f"tcp://127.0.0.1:{port}"), ("php tls", f"tls://127.0.0.1:{tls_port}")):
                rate = _php(uri, tmp / "ca.pem", tmp / "loop.php", min(args.seconds, 3.0))
                if rate is not None:
                    rows[name].append(rate)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {name: statistics.median(v) for name, v in rows.items() if v}
    for name, value in medians.items():
        print(f"{name:10} {value:10,.0f} calls/s   (rounds: {', '.join(f'{v:,.0f}' for v in rows[name])})")
    for name, values in cpu.items():
        print(f"{name:10} server CPU {statistics.median(values):6.1f} us/call "
              f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")
    ratios: dict[str, Any] = {}
    for kind in ("lines", "php"):
        if f"{kind} tls" in medians:
            ratios[kind] = medians[f"{kind} tls"] / medians[f"{kind} tcp"]
            print(f"{kind}: TLS / plaintext = {ratios[kind]:.2f}x")
    ratios["server_cpu_per_call"] = statistics.median(cpu["lines tls"]) / statistics.median(cpu["lines tcp"])
    print(f"server CPU per lines call: TLS / plaintext = {ratios['server_cpu_per_call']:.2f}x")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "medians": medians, "cpu_us": cpu, "ratios": ratios},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
