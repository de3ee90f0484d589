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
parent →     ``{"m": method, "a": [args], "k": {kwargs}}``: JSON only, never pickle
worker →     ``R`` + the result encoded as JSON (ppy's encoder, so the same types work)
worker →     ``E`` + ``{"code", "message", "data", "traceback"}`` when the call failed
===========  =====================================================================

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
MAX_FRAME = 0xFFFF_FFFF
RESULT = b"R"
ERROR = b"E"

_encoder = msgspec.json.Encoder(decimal_format="string", uuid_format="canonical")


def frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise ValueError(f"message of {len(payload)} bytes is over the 4 GiB worker channel limit")
    return HEADER.pack(len(payload)) + payload


def encode_call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """The parent's request; raises TypeError/ValueError when a value has no JSON form."""
    return frame(_encoder.encode({"m": method, "a": list(args), "k": kwargs}))


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
        doc = {"code": -32000, "message": str(exc) or type(exc).__name__, "data": {"type": type(exc).__name__},
               "traceback": tb}
    return ERROR + _encoder.encode(doc)


class WorkerLoop:
    """Runs calls against this process's own registry (its own import of the app)."""

    def __init__(self, app_dir: Path) -> None:
        from ppy.app.registry import Registry

        self.registry = Registry.build(app_dir)
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

    def stream(self, request: Any, chan_in: BinaryIO, chan_out: BinaryIO) -> bool:
        """[stream hook] Run a generator function's call as a stream (ppy.run.worker_stream); False
        when the method is not one (or cannot even start: handle() then answers the error)."""
        from ppy.run import worker_stream
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
            chan_out.write(frame(payload))
            chan_out.flush()

        def loop() -> asyncio.AbstractEventLoop:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            return self.loop

        worker_stream.run(gen, loop, chan_in, send, lambda value: RESULT + jsonvalue.encode(value), _error, _recv)
        return True


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ppy.run.worker APP_DIR (started by ppy serve --isolate)", file=sys.stderr)
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
    worker = WorkerLoop(Path(argv[0]))
    chan_out.write(frame(_encoder.encode({"ready": os.getpid(), "failed": worker.registry.failed})))
    chan_out.flush()
    while True:
        request = _recv(chan_in)
        if request is None:
            return 0
        if "cancel" in request:  # [stream hook] a cancel that crossed the stream's own end: nothing to stop
            continue
        if worker.stream(request, chan_in, chan_out):  # [stream hook] items cross as they come
            continue
        chan_out.write(frame(worker.handle(request)))
        chan_out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
