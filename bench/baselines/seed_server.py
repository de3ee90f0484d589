"""The seed's 2013 server design, ported to Python 3 as faithfully as safety allows (a benchmark baseline).

Kept from the seed (seed.txt): 100 threads each blocking in ``accept()`` on one
shared socket, ``listen(5)`` called by every thread, one connection per call,
the 11-byte length header, a 1024-byte receive loop, re-importing the app
module for every call and deleting it from ``sys.modules`` afterwards
(``RELEASEPKG = True``), ``json.dumps({'data': ..., 'error': ...})``.

Changed: Python 3 syntax; the module and function are looked up with
``importlib`` + ``getattr`` on a validated entry name instead of ``exec`` on
the client's text (never exec what a client sent); no per-connection print
(the seed printed two lines per call to a terminal; that cost is not what we
compare).  Parameters are stringified as the seed did.

Usage: python seed_server.py PORT [APP_PARENT_DIR]   (APP_PARENT_DIR holds app/h.py)
"""

from __future__ import annotations

import importlib
import json
import re
import socket
import sys
import threading
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
RECVBUFFER = 1024
MAXTHREADS = 100
RELEASEPKG = True
APPFOLDER = "app"
ENTRY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def handle(clientsock: socket.socket) -> None:
    datasize_text = clientsock.recv(11)
    try:
        datasize = int(float(datasize_text))
    except ValueError:
        datasize = 0
    data = b""
    while True:
        recv = clientsock.recv(RECVBUFFER)
        datasize -= RECVBUFFER
        data += recv
        if datasize <= 0 or not recv:
            break
    try:
        datamap = json.loads(data)
    except ValueError:
        datamap = {"entry": "", "func": "", "param": []}
    entry, func, param = datamap.get("entry", ""), datamap.get("func", ""), datamap.get("param", [])
    error = ""
    result: Any = []
    try:
        if not ENTRY.match(entry) or not ENTRY.match(func):
            raise ValueError(f"bad entry or func: {entry}.{func}")
        name = APPFOLDER + "." + entry
        src = importlib.import_module(name)
        try:
            result = getattr(src, func)(*[str(p) for p in param])
        except Exception as exc:
            error, result = str(exc), []
        if RELEASEPKG:
            sys.modules.pop(name, None)
    except Exception as exc:
        error, result = str(exc), []
    send = json.dumps({"data": result, "error": error})
    size = str(len(send)) + "."
    size += "0" * (11 - len(size))
    clientsock.send((size + send).encode())
    clientsock.close()


def gear(sock: socket.socket) -> None:
    while True:
        sock.listen(5)
        clientsock, _ = sock.accept()
        try:
            handle(clientsock)
        except OSError:
            clientsock.close()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 32123
    app_parent = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[2] / "tests/apps/seed"
    sys.path.insert(0, str(app_parent))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(5)
    threads = [threading.Thread(target=gear, args=(sock,), daemon=True) for _ in range(MAXTHREADS)]
    for t in threads:
        t.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
