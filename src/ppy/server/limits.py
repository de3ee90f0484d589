"""Open files: make ``--max-connections`` fit the process's ``RLIMIT_NOFILE`` before serving.

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
"""

from __future__ import annotations

import dataclasses
import logging

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
