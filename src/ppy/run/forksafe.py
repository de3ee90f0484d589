"""What a process forked inside a function may not do: keep the server's sockets, or answer calls.

A function may call ``os.fork()`` (directly, or through a library that daemonises
or uses ``multiprocessing``'s fork start method).  The child is a copy of the
server: it holds every listening and client socket, and if it returns from the
function it runs on into the server's own code.  Two things follow:

* :func:`install` registers an ``os.register_at_fork`` hook that, in the child,
  closes every listening socket and every socket whose local address is a
  listener's (the connections accepted on it), so a child that lives on never
  keeps the port after the server exits (a restart binds at once) nor a
  client's connection open.  Sockets the function opened itself (a database
  connection: another local address) are left alone.
* :data:`state.child` is set in the child; the code a function returns into
  (``ppy.run.threads``, ``ppy.run.worker``) checks it and ends the child with
  ``os._exit(0)`` instead of delivering a result nobody asked for.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable


class _State:
    __slots__ = ("child", "installed")

    def __init__(self) -> None:
        self.child = False  # this process was forked by user code after install()
        self.installed = False


state = _State()


def install(extra: Callable[[], None] | None = None) -> None:
    """Register the fork hook once per process; ``extra`` also runs in the child (the worker's channel)."""
    if state.installed:
        return
    state.installed = True

    def in_child() -> None:
        state.child = True
        close_server_sockets()
        if extra is not None:
            extra()

    os.register_at_fork(after_in_child=in_child)


def exit_if_child() -> None:
    """Called where a function's call returns into server code: a forked child ends here, silently."""
    if state.child:
        os._exit(0)


def close_server_sockets() -> None:
    """Close the listening sockets and the connections accepted on them (same local address)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # not Linux: nothing to scan
        return
    listening: list[int] = []
    others: list[tuple[int, object]] = []
    for fd in fds:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                listening.append(fd)
                others.append((-1, sock.getsockname()))
            elif sock.family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
                others.append((fd, sock.getsockname()))
        except OSError:
            pass
        finally:
            sock.detach()  # the fd stays open until we decide below
    addresses = {addr for fd, addr in others if fd == -1 and addr not in ("", b"")}
    any_host_ports = {addr[1] for addr in addresses if isinstance(addr, tuple) and addr[0] in _ANY_HOST}
    for fd in listening:
        _close(fd)
    for fd, addr in others:
        if fd == -1:
            continue
        if addr in addresses or (isinstance(addr, tuple) and len(addr) >= 2 and addr[1] in any_host_ports):
            _close(fd)


_ANY_HOST = ("0.0.0.0", "::")


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
