"""Listening sockets passed by systemd socket activation (``LISTEN_FDS``), by name.

With ``ppy.socket`` holding the ports, a restart of ``ppy serve`` never
refuses a connection: while no process serves, new connections wait in the
kernel's backlog of the socket systemd keeps open, and the next process
accepts them.  systemd passes the sockets as file descriptors 3, 4, ...
(``LISTEN_FDS`` of them) to the process whose pid is ``LISTEN_PID``, named by
``FileDescriptorName=`` in ``LISTEN_FDNAMES`` (``a:b:c``).  ppy knows the
names ``tcp``, ``http``, ``uds``, ``tls`` and ``https``; a passed socket
replaces binding for its name (the flag for that listener only names it then).
An unnamed socket (systemd's default name ``unknown``) is ``uds`` when it is a
Unix socket, else ``tcp``.

The variables are removed from the environment once read, so processes this
one starts (``--workers`` children, ``--isolate`` pools) never take them for
their own; the supervisor hands the sockets to its workers itself.
"""

from __future__ import annotations

import os
import socket

from ppy.server.state import StartupError

#: The names ``FileDescriptorName=`` may give, each a listener of ``ppy serve``.
NAMES = ("tcp", "http", "uds", "tls", "https")
#: The first passed descriptor (sd_listen_fds(3)): 0-2 are stdin, stdout and stderr.
FIRST_FD = 3
ENV = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def take() -> dict[str, list[socket.socket]]:
    """The sockets passed to *this* process, by name; ``{}`` when none were (the usual case)."""
    count, pid, names = (os.environ.get(var, "") for var in ENV)
    for var in ENV:
        os.environ.pop(var, None)
    if not count or pid != str(os.getpid()):
        return {}  # not for us (e.g. inherited from a parent that was activated): bind as usual
    try:
        n = int(count)
    except ValueError:
        raise StartupError(f"LISTEN_FDS={count!r} is not a number of sockets; check the ppy.socket unit") from None
    given = names.split(":") if names else []
    sockets: dict[str, list[socket.socket]] = {}
    for i in range(n):
        fd = FIRST_FD + i
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise StartupError(f"LISTEN_FDS passed descriptor {fd}, which is not a socket ({exc.strerror or exc}); "
                               "check ListenStream= in the ppy.socket unit") from None
        os.set_inheritable(fd, False)  # children get the sockets they need explicitly
        name = given[i] if i < len(given) and given[i] not in ("", "unknown") else _default_name(sock)
        if name not in NAMES:
            sock.detach()
            raise StartupError(f"socket {fd} passed by systemd is named {name!r}; name each socket "
                               f"FileDescriptorName= one of {', '.join(NAMES)} in the ppy.socket unit")
        if (name == "uds") != (sock.family == socket.AF_UNIX):
            sock.detach()
            raise StartupError(f"socket {fd} passed by systemd as {name!r} is "
                               f"{'a Unix' if sock.family == socket.AF_UNIX else 'an IP'} socket; "
                               "name Unix sockets uds and IP sockets tcp, http, tls or https")
        sockets.setdefault(name, []).append(sock)
    return sockets


def _default_name(sock: socket.socket) -> str:
    return "uds" if sock.family == socket.AF_UNIX else "tcp"


def describe(sockets: dict[str, list[socket.socket]]) -> str:
    """``tcp=127.0.0.1:32123, uds=/run/ppy.sock`` for the start-up banner and logs."""
    parts = []
    for name, socks in sockets.items():
        for sock in socks:
            addr = sock.getsockname()
            where = addr if isinstance(addr, str) else f"{addr[0]}:{addr[1]}"
            parts.append(f"{name}={where}")
    return ", ".join(parts)
