"""``ppy.Client``: a blocking client with one persistent connection.

Over ``tcp://`` and ``unix://`` it speaks the lines dialect; over
``http://`` it POSTs to ``/rpc``.  A connection found dead *before* a request
is sent (the server restarted, or closed it for idleness) is replaced
transparently; once a request is on the wire it is never re-sent, because the
server may have run it -- with one exception: a server that restarts first says
``rpc.goaway`` and answers every request that reaches it, so a call on a reused
connection that was closed with no reply byte after ``rpc.goaway`` never ran and
is sent again on a fresh connection.  A refused connect (nothing was sent) is
retried with a short back-off until ``connect_timeout``, which rides out the gap
of a restart.
"""

from __future__ import annotations

import http.client
import itertools
import select
import socket
import ssl
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import msgspec

from ppy.client.common import (
    DEFAULT_URL,
    GOAWAY,
    REFUSED_FIRST_PAUSE,
    REFUSED_MAX_PAUSE,
    Address,
    Namespace,
    build_params,
    is_notification,
    next_pause,
    refused,
    result_of,
    tls_context,
    tls_failure,
)
from ppy.client.errors import ClientError, ClientTimeout, ConnectError
from ppy.wire import jsonrpc

_decode = msgspec.json.decode
MAX_REPLY_BYTES = 1 << 30  # a runaway reply must not eat all memory


class _GoneAway(ConnectError):
    """Closed with no reply byte after ``rpc.goaway``: the request never ran, send it again."""


class Client:
    """``tls://`` and ``https://`` verify the server's certificate and host name; ``ca``, ``cert``, ``key``
    or ``ssl_context`` as in :func:`ppy.client.common.tls_context`."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 30.0, connect_timeout: float = 5.0,
                 token: str | None = None, ca: str | Path | None = None, cert: str | Path | None = None,
                 key: str | Path | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.address = Address.parse(url)
        self.ssl_context = tls_context(self.address, ca=ca, cert=cert, key=key, ssl_context=ssl_context)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.token = token
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._http: http.client.HTTPConnection | None = None
        self._goaway = False  # the server said rpc.goaway on this connection: the next call opens a new one
        self._reused = False  # the connection carried a call before the one being sent

    # -- public API ------------------------------------------------------------------

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Call ``method`` with positional *or* keyword arguments and return its result."""
        return self.request(method, build_params(args, kwargs), timeout=timeout)

    def request(self, method: str, params: list[Any] | dict[str, Any] | None = None, *,
                timeout: float | None = None) -> Any:
        rid = next(self._ids)
        wait = self.timeout if timeout is None else timeout
        line = jsonrpc.encode_request(method, [] if params is None else params, rid,
                                      timeout=timeout)
        reply = self._roundtrip(line, rid, wait)
        return result_of(reply)

    def stream(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Stream:
        """Iterate over the items of a generator function as the server produces them.

        ``timeout`` bounds the whole stream (the server ends it with a timeout error past it); each
        item may take up to the client's ``timeout`` to arrive.  Leaving the loop early (``break``
        on an iterator nobody else holds, ``close()``, or leaving ``with client.stream(...)``)
        cancels the stream on the server.  The generator's return value is ``.result`` afterwards.
        A function that is not a generator yields nothing and its result is ``.result``.
        Finish or close a stream before making other calls with the same client.
        """
        return self.stream_request(method, build_params(args, kwargs), timeout=timeout)

    def stream_request(self, method: str, params: list[Any] | dict[str, Any] | None = None, *,
                       timeout: float | None = None) -> Stream:
        if self.address.scheme in ("http", "https"):
            raise ClientError("Client.stream() speaks tcp:// and unix://; over HTTP use GET /stream/... "
                              "(Server-Sent Events)")
        return Stream(self, method, [] if params is None else params, timeout)

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        line = jsonrpc.encode_request(method, build_params(args, kwargs), notify=True)
        if self.address.scheme in ("http", "https"):
            self._post(line, self.timeout)
        else:
            self._send(line)

    def batch(self, calls: list[tuple[str, list[Any] | dict[str, Any]]], *,
              timeout: float | None = None) -> list[Any]:
        """Send several calls in one request; returns results or RemoteError instances, in order."""
        ids = [next(self._ids) for _ in calls]
        body = b"[" + b",".join(jsonrpc.encode_request(m, p, i) for (m, p), i in zip(calls, ids, strict=True)) + b"]"
        replies = self._roundtrip(body, ids, self.timeout if timeout is None else timeout)
        if isinstance(replies, dict):  # the whole batch was rejected
            result_of(replies)
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        out: list[Any] = []
        for i in ids:
            try:
                out.append(result_of(by_id.get(i)))
            except ClientError as exc:
                out.append(exc)
        return out

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._http is not None:
            self._http.close()
            self._http = None
        self._buf.clear()
        self._goaway = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Namespace:
        if name.startswith("_"):
            raise AttributeError(name)
        return Namespace(self, name)

    # -- transport -------------------------------------------------------------------

    def _roundtrip(self, body: bytes, rid: Any, wait: float) -> Any:
        if self.address.scheme in ("http", "https"):
            return _decode(self._post(body, wait))
        self._send(body)
        try:
            return self._read_reply(rid, wait)
        except _GoneAway:  # the restarting server never saw it: once more, on a fresh connection
            self._send(body)
            return self._read_reply(rid, wait)

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.connect_timeout
        pause = REFUSED_FIRST_PAUSE
        while True:
            try:
                sock = self._open(max(0.001, deadline - time.monotonic()))
                break
            except ssl.SSLError as exc:
                raise ConnectError(tls_failure(self.url, exc)) from None
            except OSError as exc:
                remaining = deadline - time.monotonic()
                if refused(exc) and remaining > 0:  # nothing was sent: a restart's gap, try again
                    time.sleep(next_pause(pause, remaining))
                    pause = min(pause * 2, REFUSED_MAX_PAUSE)
                    continue
                if isinstance(exc, TimeoutError):
                    raise ClientTimeout(f"connecting to {self.url} took over {self.connect_timeout:g} s "
                                        "(connect_timeout)") from None
                again = f" (retried for {self.connect_timeout:g} s, connect_timeout)" if refused(exc) else ""
                raise ConnectError(f"cannot connect to {self.url}: {exc.strerror or exc}{again}; "
                                   "is `ppy serve` running?") from None
        self._sock = sock
        self._buf.clear()
        self._goaway = self._reused = False
        if self.token is not None:
            rid = next(self._ids)
            self._sock.sendall(jsonrpc.encode_request("rpc.auth", [self.token], rid) + b"\n")
            result_of(self._read_reply(rid, self.timeout))
        return sock

    def _open(self, timeout: float) -> socket.socket:
        addr = self.address
        if addr.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(addr.path)
            except OSError:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((addr.host, addr.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is None:
            return sock
        try:  # the handshake is bounded by connect_timeout too
            return self.ssl_context.wrap_socket(sock, server_hostname=addr.host)
        except BaseException:
            sock.close()
            raise

    def _healthy(self, sock: socket.socket) -> bool:
        """A reused socket that is readable before we sent anything was closed by the server, or
        told ``rpc.goaway`` (the server is handing over): either way, the call goes to a new one."""
        if self._goaway or GOAWAY.encode() in self._buf:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        try:
            sock.setblocking(False)
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):  # TLS: a record with no data yet
            return True
        except OSError:
            return False
        finally:
            try:
                sock.setblocking(True)
            except OSError:
                pass
        if not data or GOAWAY.encode() in data:
            return False
        self._buf += data  # unexpected bytes (a late reply): keep them, matching by id skips them
        return True

    def _send(self, body: bytes) -> None:
        sock = self._sock
        if sock is not None and not self._healthy(sock):
            self.close()
            sock = None
        if sock is None:
            sock = self._connect()
        else:
            self._reused = True
        try:
            sock.settimeout(self.timeout)
            sock.sendall(body + b"\n")
        except OSError as exc:
            self.close()
            raise ConnectError(f"connection to {self.url} broke while sending: {exc}") from None

    def _read_reply(self, rid: Any, wait: float) -> Any:
        want = set(rid) if isinstance(rid, list) else {rid}
        while True:
            reply = self._read_line(wait)
            if isinstance(reply, list):
                if any(isinstance(r, dict) and r.get("id") in want for r in reply):
                    return self._replied(reply)
                continue
            if is_notification(reply):
                if reply.get("method") == GOAWAY:
                    self._goaway = True
                continue
            if isinstance(reply, dict) and (reply.get("id") in want or reply.get("id") is None):
                return self._replied(reply)

    def _replied(self, reply: Any) -> Any:
        if self._goaway:  # the server hands over: the next call goes to a fresh connection
            self.close()
        return reply

    def _cancel(self, rid: int) -> None:
        """Stop stream ``rid`` on the server and read (dropping them) its remaining lines up to its one
        response: a server whose client stopped reading also stopped reading requests, so the cancel
        is only seen once the lines it already sent are read.  On any failure the connection is closed."""
        sock = self._sock
        assert sock is not None
        try:
            sock.settimeout(self.timeout)
            sock.sendall(jsonrpc.encode_request("rpc.cancel", {"id": rid}, notify=True) + b"\n")
            while True:
                reply = self._read_line(self.timeout)
                if isinstance(reply, dict) and "method" not in reply and reply.get("id") in (rid, None):
                    return
        except (OSError, ClientError, msgspec.DecodeError):
            self.close()

    def _read_line(self, wait: float) -> Any:
        """The next line from the server, decoded."""
        sock = self._sock
        assert sock is not None
        sock.settimeout(wait)
        nl = self._buf.find(b"\n")
        while nl < 0:
            try:
                chunk = sock.recv(262144)
            except TimeoutError:
                self.close()  # the late reply must not be read as the next call's
                raise ClientTimeout(f"no reply from {self.url} within {wait:g} s") from None
            except OSError as exc:
                self.close()
                raise ConnectError(f"connection to {self.url} broke: {exc}") from None
            if not chunk:
                gone_away = self._goaway and self._reused and not self._buf
                self.close()
                hint = (" — over TLS also how a server with --tls-client-ca refuses a missing or untrusted "
                        "client certificate (pass cert= and key=)") if self.ssl_context is not None else ""
                if gone_away:
                    raise _GoneAway(f"{self.url} said rpc.goaway and closed the connection")
                raise ConnectError(f"{self.url} closed the connection before replying "
                                   f"(server restarting or the request was refused){hint}")
            start = len(self._buf)
            self._buf += chunk
            if len(self._buf) > MAX_REPLY_BYTES:
                self.close()
                raise ClientError("reply larger than 1 GiB; ask for less data")
            nl = self._buf.find(b"\n", start)
        line = bytes(self._buf[:nl])
        del self._buf[: nl + 1]
        return _decode(line)

    def _post(self, body: bytes, wait: float) -> bytes:
        addr = self.address
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        deadline = time.monotonic() + self.connect_timeout
        pause = REFUSED_FIRST_PAUSE
        stale = 0
        while True:
            if self._http is None:
                self._http = self._http_connection(wait)
            try:
                self._http.timeout = wait
                self._http.request("POST", f"{addr.path}/rpc", body=body, headers=headers)
                response = self._http.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()  # the server drains (a restart): the next call opens a new connection
                return data if response.status != 204 else b"null"
            except TimeoutError:
                self.close()
                raise ClientTimeout(f"no reply from {self.url} within {wait:g} s") from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # http.client reuses keep-alive connections; a stale one fails before the request is read.
                self.close()
                stale += 1
                if stale == 2:
                    raise ConnectError(f"connection to {self.url} broke: {exc}") from None
            except ssl.SSLError as exc:
                self.close()
                raise ConnectError(tls_failure(self.url, exc)) from None
            except OSError as exc:
                self.close()
                remaining = deadline - time.monotonic()
                if refused(exc) and remaining > 0:  # nothing was sent: a restart's gap, try again
                    time.sleep(next_pause(pause, remaining))
                    pause = min(pause * 2, REFUSED_MAX_PAUSE)
                    continue
                raise ConnectError(f"cannot reach {self.url}: {exc.strerror or exc}") from None

    def _http_connection(self, wait: float) -> http.client.HTTPConnection:
        addr = self.address
        if addr.scheme == "https":
            return http.client.HTTPSConnection(addr.host, addr.port, timeout=wait, context=self.ssl_context)
        return http.client.HTTPConnection(addr.host, addr.port, timeout=wait)


class Stream:
    """``Client.stream()``: an iterator over a stream's items, also a context manager."""

    def __init__(self, client: Client, method: str, params: list[Any] | dict[str, Any],
                 timeout: float | None) -> None:
        self.client = client
        self.method = method
        self._result: list[Any] = [None]
        # A plain function, not a method: the generator must not reference this object, so that
        # dropping the iterator (``break``) frees it at once and its finally cancels the stream.
        self._items = _run(client, method, params, timeout, self._result)

    @property
    def result(self) -> Any:
        """The generator's return value (the call's result), once the items are exhausted."""
        return self._result[0]

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        """Cancel the stream if it is still running (the server closes the generator)."""
        self._items.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run(client: Client, method: str, params: list[Any] | dict[str, Any], timeout: float | None,
         result: list[Any]) -> Generator[Any, None, None]:
    rid = next(client._ids)
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": rid, "stream": True}
    if timeout is not None:
        obj["timeout"] = timeout
    client._send(msgspec.json.encode(obj))
    done = False
    try:
        while True:
            reply = client._read_line(client.timeout)
            if not isinstance(reply, dict):
                continue
            kind = reply.get("method")
            if kind == "rpc.item":
                item = reply.get("params") or {}
                if item.get("id") == rid:
                    yield item.get("item")
                continue
            if kind == GOAWAY:
                client._goaway = True  # the stream goes on; the next call takes a fresh connection
                continue
            if kind is not None or reply.get("id") not in (rid, None):
                continue  # another notification, or the late reply of an earlier call
            done = True
            result[0] = result_of(client._replied(reply))
            return
    finally:
        if not done and client._sock is not None:
            client._cancel(rid)
