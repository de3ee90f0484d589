"""One ``--isolate`` worker process: import the app folder, then run one call at a time.

Started by :mod:`ppy.run.isolated` as ``python -m ppy.run.worker APP_DIR``.
The parent and the worker talk over the worker's stdin/stdout pipes, which
the worker moves to private descriptors at once: fd 1 then points at stderr,
so a ``print()`` in user code lands in the server's log instead of
corrupting the channel.

Frames (both directions): a 4-byte big-endian length, then that many bytes.

===========  =====================================================================
direction    payload
===========  =====================================================================
worker →     ``{"ready": pid, "failed": {entry: why}}`` once the app is imported
parent →     ``{"i": id, "m": method, "a": [args], "k": {kwargs}}``: JSON only, never pickle
worker →     ``R`` + id and pid (``REPLY_TAG``) + the result as JSON (ppy's encoder, so the same types work)
worker →     ``E`` + id and pid + ``{"code", "message", "data", "traceback"}`` when the call failed
===========  =====================================================================

A reply carries the id of its request and the pid that wrote it; the parent
drops any other (see :mod:`ppy.run.forksafe`).  A process forked inside a
function cannot write one anyway: in the child, the channel's descriptors are
pointed at ``/dev/null`` at fork time, and a child that returns into this loop
ends with ``os._exit(0)``.

The parent already bound and converted the parameters, so invalid params
never reach a worker; the worker binds the JSON form again with
:meth:`Function.rebind`, which gives back the same values.  EOF on stdin
means "exit now" (the parent retires or replaces this worker).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import struct
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

HEADER = struct.Struct(">I")
REPLY_TAG = struct.Struct(">QI")  # request id, pid of the worker that ran it
MAX_FRAME = 0xFFFF_FFFF
RESULT = b"R"
ERROR = b"E"

_encoder = msgspec.json.Encoder(decimal_format="string", uuid_format="canonical")


def frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise ValueError(f"message of {len(payload)} bytes is over the 4 GiB worker channel limit")
    return HEADER.pack(len(payload)) + payload


def encode_call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any], request_id: int = 0) -> bytes:
    """The parent's request; raises TypeError/ValueError when a value has no JSON form."""
    return frame(_encoder.encode({"i": request_id, "m": method, "a": list(args), "k": kwargs}))


def split_reply(body: bytes) -> tuple[int, int, bytes]:
    """A worker's reply frame as (request id, pid of the worker that wrote it, kind byte + payload)."""
    if len(body) < 1 + REPLY_TAG.size:
        from ppy.errors import InternalError

        raise InternalError("a truncated reply from the isolated worker; please report it")
    rid, pid = REPLY_TAG.unpack_from(body, 1)
    return rid, pid, body[:1] + body[1 + REPLY_TAG.size:]


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if not data or len(data) < n:
        return None
    return data


def _recv(stream: BinaryIO) -> Any | None:
    head = _read_exactly(stream, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    body = _read_exactly(stream, size) if size else b""
    if body is None:
        return None
    return msgspec.json.decode(body)


def _error(exc: BaseException) -> bytes:
    from ppy.errors import PpyError

    tb = "".join(traceback.format_exception(exc))
    if isinstance(exc, PpyError):
        doc = {"code": exc.code, "message": exc.message, "data": exc.data, "traceback": tb}
    else:
        try:  # an exception whose __str__ raises must not take the worker down (nor read as a crash)
            message = str(exc)
        except Exception:
            message = f"<unprintable {type(exc).__name__}>"
        doc = {"code": -32000, "message": message or type(exc).__name__, "data": {"type": type(exc).__name__},
               "traceback": tb}
    return ERROR + _encoder.encode(doc)


class WorkerLoop:
    """Runs calls against this process's own registry (its own import of the app)."""

    def __init__(self, app_dir: Path, import_timeout: float | None = None) -> None:
        from ppy.app.registry import Registry

        self.registry = Registry.build(app_dir, import_timeout)
        self.loop: asyncio.AbstractEventLoop | None = None

    def handle(self, request: Any) -> bytes:
        from ppy.wire import jsonvalue

        try:
            fn = self.registry.lookup(request["m"])
            args, kwargs = fn.rebind(request["a"], request["k"])
            if fn.is_async:
                if self.loop is None:
                    self.loop = asyncio.new_event_loop()
                result = self.loop.run_until_complete(fn.fn(*args, **kwargs))
            else:
                result = fn.fn(*args, **kwargs)
        except BaseException as exc:  # sys.exit() in user code must not end the worker silently
            return _error(exc)
        try:
            return RESULT + jsonvalue.encode(result)
        except BaseException as exc:
            return _error(exc)

    def stream(self, request: Any, chan_in: BinaryIO, chan_out: BinaryIO, tag: bytes) -> bool:
        """[stream hook] Run a generator function's call as a stream (ppy.run.worker_stream); False
        when the method is not one (or cannot even start: handle() then answers the error).  Every
        frame carries ``tag`` (the request id and this pid) after its kind byte, as replies do."""
        from ppy.run import forksafe, worker_stream
        from ppy.wire import jsonvalue

        fn = self.registry.functions.get(request["m"])
        if fn is None or not fn.streams:
            return False
        try:
            args, kwargs = fn.rebind(request["a"], request["k"])
            gen = fn.fn(*args, **kwargs)
        except BaseException:
            return False

        def send(payload: bytes) -> None:
            forksafe.exit_if_child()  # a child forked by the generator returned here too: it ends now
            chan_out.write(frame(payload[:1] + tag + payload[1:]))
            chan_out.flush()

        def loop() -> asyncio.AbstractEventLoop:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            return self.loop

        worker_stream.run(gen, loop, chan_in, send, lambda value: RESULT + jsonvalue.encode(value), _error, _recv)
        return True


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m ppy.run.worker APP_DIR [IMPORT_TIMEOUT] (started by ppy serve --isolate)",
              file=sys.stderr)
        return 2
    # Keep the channel private before any user code runs.
    chan_in = os.fdopen(os.dup(0), "rb")  # buffered: read(n) returns n bytes or EOF, never a part
    chan_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    # Ctrl-C reaches the whole process group; only the server decides when a worker ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The server already logged the app's import errors once; a copy per worker is noise.
    logging.getLogger("ppy").addHandler(logging.NullHandler())
    logging.getLogger("ppy").propagate = False
    pid = os.getpid()

    def poison_channel() -> None:  # in a child forked by user code: the channel is not its to use
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, chan_in.fileno())
        os.dup2(null, chan_out.fileno())
        os.close(null)

    from ppy.run import forksafe

    forksafe.install(poison_channel)
    worker = WorkerLoop(Path(argv[0]), float(argv[1]) if len(argv) > 1 else None)
    chan_out.write(frame(_encoder.encode({"ready": os.getpid(), "failed": worker.registry.failed})))
    chan_out.flush()
    while True:
        request = _recv(chan_in)
        if request is None:
            return 0
        if "cancel" in request:  # [stream hook] a cancel that crossed the stream's own end: nothing to stop
            continue
        tag = REPLY_TAG.pack(request.get("i", 0) if isinstance(request, dict) else 0, pid)
        if worker.stream(request, chan_in, chan_out, tag):  # [stream hook] items cross as they come
            continue
        reply = worker.handle(request)
        forksafe.exit_if_child()  # a child forked by the function returned here too: it ends now
        chan_out.write(frame(reply[:1] + tag + reply[1:]))
        chan_out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
