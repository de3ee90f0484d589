"""Open files: make ``--max-connections`` fit the process's ``RLIMIT_NOFILE`` before serving, and
accept connections so that running out of descriptors anyway is seen, logged and answered.

Every connection is a file descriptor.  systemd and most shells start a
process with a soft limit of 1024 open files (the hard limit is usually far
higher), which the default ``--max-connections 1024`` alone would use up: new
clients and ``/healthz`` were then reset silently by the event loop's accept
(libuv closes what it cannot keep).  So at start the server raises its soft
limit to the hard one (nginx's ``worker_rlimit_nofile``) and, if the
connections still do not fit beside a reserve for everything else (functions
opening files and sockets, the isolate pool's pipes, logs), lowers the
connection limit and says so.  Past the connection limit, a client gets the
overloaded error in its own dialect, which needs a descriptor: the reserve is
also what keeps those answers (and ``/healthz``) working.

Functions can still use up the descriptors (a leak, a burst of open files).  The event loop's own
accept (libuv's, under uvloop) meets ``EMFILE`` by accepting each waiting client and closing it at
once: the clients see a reset and nothing is logged.  So ppy accepts in Python (:class:`Acceptor`):
out of descriptors it logs, stops accepting for ``BACKOFF_S`` (clients wait in the listen backlog,
to be served once descriptors are free again) and spends one spare descriptor to answer the
longest-waiting client "overloaded" (``-32002``, or HTTP 503) in its own dialect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import functools
import logging
import os
import socket
import ssl as ssl_mod
from collections.abc import Callable, Coroutine
from typing import Any, cast

from ppy.config import Config

log = logging.getLogger("ppy.server")

#: Descriptors kept free besides connections: files and sockets opened by functions, the listeners,
#: the loop's own, logs; ``threads`` and ``3 x pool_size`` (isolate pipes) are added to it.
RESERVE = 64


def reserve(config: Config) -> int:
    return RESERVE + config.threads + (3 * config.pool_size if config.isolate else 0)


def fit_open_files(config: Config) -> Config:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return ``config`` with ``max_connections``
    lowered (and logged) if it does not fit beside :func:`reserve`.  Unchanged where there is no rlimit."""
    try:
        import resource
    except ImportError:  # not Unix
        return config
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20  # Linux refuses more than fs.nr_open
    if soft != want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:  # hard may be RLIM_INFINITY, which some kernels refuse
            log.warning("could not raise the open-files limit from %d to %d (%s)", soft, hard, exc)
    if soft == resource.RLIM_INFINITY:
        return config
    listeners = 2 if config.http_port else 1  # TCP and HTTP each accept up to --max-connections
    budget = soft - reserve(config)
    fits = max(1, budget // listeners)
    if config.max_connections <= fits:
        return config
    log.warning("--max-connections %d does not fit the open-files limit (ulimit -n %d, hard limit %d): "
                "%d descriptors are kept for functions, threads and pipes, and %d listener(s) share the rest; "
                "serving at most %d connections per listener. Raise the limit (LimitNOFILE= in systemd, "
                "ulimit -n) or lower --max-connections to silence this",
                config.max_connections, soft, hard, reserve(config), listeners, fits)
    return dataclasses.replace(config, max_connections=fits)


#: How long accepting pauses when the process or the system is out of descriptors (or buffers).
BACKOFF_S = 0.1
#: Connections accepted per wake-up of one listener: a burst is taken in, but in turns with the rest.
ACCEPTS_PER_WAKEUP = 128
#: Accept errors that mean "out of a resource": pause and retry.  Others concern one client only.
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _Spare:
    """One descriptor the process holds back: closed to accept a client when none is left, so that
    client can be told "overloaded" instead of being left waiting; taken back as soon as one is free."""

    def __init__(self) -> None:
        self.fd: int | None = None

    def restore(self) -> None:
        if self.fd is None:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass  # still out: the next refusal waits for it

    def spend(self) -> bool:
        if self.fd is None:
            return False
        os.close(self.fd)
        self.fd = None
        return True


#: Descriptors are the process's, so is the spare: every listener shares it.
SPARE = _Spare()


class Acceptor:
    """Accept clients of one listening socket and hand them to the event loop as ``factory()``
    protocols; out of descriptors, hand the longest-waiting one to ``refusing()`` instead (a protocol
    that answers "overloaded" in the client's dialect and closes).  Stands where an
    :class:`asyncio.Server` would: :meth:`close` stops accepting and closes the socket."""

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.BaseProtocol],
                 refusing: Callable[[], asyncio.BaseProtocol], *, ssl: ssl_mod.SSLContext | None = None,
                 handshake_timeout: float | None = None, max_handshakes: int = 1024,
                 scheme: str | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.factory = factory
        self.refusing = refusing
        self.ssl = ssl
        self.handshake_timeout = handshake_timeout if ssl is not None else None
        self.name = _describe(sock, scheme or ("tls" if ssl is not None else "tcp"))
        self.refused = 0  # clients answered "overloaded" for want of a descriptor
        #: TLS handshakes under way (these connections are not counted by --max-connections yet): at
        #: ``max_handshakes`` the listener accepts no more until one ends, clients wait in the backlog.
        self.handshakes = 0
        self.max_handshakes = max_handshakes
        SPARE.restore()
        self._paused: asyncio.TimerHandle | None = None  # out of descriptors: accepting resumes then
        self._listening = False
        self._starved = False  # the last accept ran out of descriptors (logged once per episode)
        self._refused_before = 0  # self.refused when the episode began
        self._closed = False
        sock.setblocking(False)
        self._listen()

    def _listen(self) -> None:
        """Watch the socket for clients unless closed, backing off, or at ``max_handshakes``."""
        want = not self._closed and self._paused is None and self.handshakes < self.max_handshakes
        if want and not self._listening:
            self.loop.add_reader(self.sock.fileno(), self._accept)
        elif self._listening and not want:
            self.loop.remove_reader(self.sock.fileno())
        self._listening = want

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._paused is not None:
            self._paused.cancel()
        self._listen()
        self.sock.close()

    def _accept(self) -> None:
        if SPARE.fd is None:  # first the spare, then clients: a descriptor freed goes back to the spare
            SPARE.restore()
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES:
                    self._out_of_descriptors(exc)
                    return
                log.info("accept on %s failed for one client: %s", self.name, exc)  # ECONNABORTED, EPERM...
                continue
            if self._starved:
                self._starved = False
                log.warning("accepting on %s again: descriptors are free (%d clients were answered "
                            "overloaded meanwhile)", self.name, self.refused - self._refused_before)
            self._start(conn, addr, self.factory)
            if self.handshakes >= self.max_handshakes:
                self._listen()
                return

    def _start(self, conn: socket.socket, addr: Any, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        coro = self.loop.connect_accepted_socket(factory, conn, ssl=self.ssl,
                                                 ssl_handshake_timeout=self.handshake_timeout)
        if self.ssl is not None:
            self.handshakes += 1
        self._step(coro, conn, addr)

    def _handshake_over(self) -> None:
        if self.ssl is not None:
            self.handshakes -= 1
            if not self._listening:
                self._listen()

    def _step(self, coro: Coroutine[Any, Any, Any], conn: socket.socket, addr: Any, _done: object = None) -> None:
        """Drive ``connect_accepted_socket`` without a Task, which would cost a loop turn per client
        (the protocol's ``connection_made`` would come one turn later than with the loop's own accept).
        The first step opens the transport; the rest waits for ``connection_made`` or the TLS handshake."""
        try:
            waiting = coro.send(None)
        except StopIteration:
            self._handshake_over()
            return
        except Exception as exc:  # a failed TLS handshake, a client gone: that client's problem only
            self._handshake_over()
            conn.close()
            if not isinstance(exc, (ConnectionResetError, BrokenPipeError)):  # not a probe's connect-and-close
                # A warning, so rate-limited per client host (ppy.logs): a misconfigured client is worth
                # seeing, a scanner sending plaintext to a TLS port must not flood the log.
                log.warning("connection from %s on %s failed before its first request: %s", addr or "a client",
                            self.name, str(exc) or type(exc).__name__,
                            extra={"ppy_key": addr[0] if isinstance(addr, tuple) else addr})
            return
        waiting.add_done_callback(functools.partial(self._step, coro, conn, addr))

    def _out_of_descriptors(self, exc: OSError) -> None:
        """Pause, answer one waiting client from the spare descriptor, and retry after BACKOFF_S."""
        self._paused = self.loop.call_later(BACKOFF_S, self._resume)
        self._listen()
        if not self._starved:
            self._starved = True
            self._refused_before = self.refused
            log.warning("cannot accept on %s: %s. Accepting pauses %g s at a time and waiting clients are "
                        "answered overloaded one by one until descriptors are free; look for functions that "
                        "leave files or sockets open, or raise the open-files limit (ulimit -n)",
                        self.name, exc.strerror or exc, BACKOFF_S)
        if exc.errno not in (errno.EMFILE, errno.ENFILE) or not SPARE.spend():
            return
        try:
            conn, addr = self.sock.accept()
        except OSError:
            return
        self.refused += 1
        self._start(conn, addr, self._refusal)

    def _refusal(self) -> asyncio.BaseProtocol:
        return _Refusal(self.refusing(), SPARE.restore)  # its descriptor back to the spare, before a function

    def _resume(self) -> None:
        self._paused = None
        self._listen()


class _Refusal(asyncio.Protocol):
    """The refusing protocol, and a call back once its connection is gone (its descriptor is free)."""

    def __init__(self, inner: asyncio.BaseProtocol, gone: Callable[[], None]) -> None:
        self.inner = cast(asyncio.Protocol, inner)
        self.gone = gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.gone()


def _describe(sock: socket.socket, scheme: str) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    host, port = name[0], name[1]
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"
