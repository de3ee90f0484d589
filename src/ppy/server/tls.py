"""TLS for ``--tls-port`` and ``--https-port``: building, checking and reloading the server's context.

Both TLS ports are ordinary listeners given an :class:`ssl.SSLContext`: the
event loop does the handshake, so the TCP connection protocol sniffs the
dialect from decrypted bytes and the HTTP server serves its routes unchanged.
Plaintext sent to a TLS port fails the handshake and only that connection is
closed.

Reloading (``SIGHUP``): an asyncio server keeps the context it was created
with, so that *listening* context never changes.  Its ``sni_callback`` — which
OpenSSL calls early in every handshake, with or without SNI — hands the
connection the *current* context, which carries the certificate, key, client
CA and verification mode.  :meth:`Tls.reload` builds a fresh current context
from the files; a file that fails to load is logged and the old context kept.
Open connections keep the context they were made with.

Start-up never falls back to plaintext: a TLS port without its certificate
or key, an unreadable file, a key that does not match its certificate, or a
certificate flag without a TLS port is refused (:class:`TlsConfigError`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ppy.config import Config

log = logging.getLogger("ppy.tls")


class TlsConfigError(ValueError):
    """A TLS flag or file that cannot work; the message says what to fix."""


def wanted(config: Config) -> bool:
    """Whether any TLS port is on (and the certificate flags must therefore be usable)."""
    return bool(config.tls_port or config.https_port)


def check_flags(config: Config, passed: bool = False) -> None:
    """Refuse flag combinations that would serve something other than what was asked.  ``passed``: a
    ``tls``/``https`` socket came from systemd (LISTEN_FDS), which needs the certificate flags too."""
    if wanted(config) or passed:
        missing = [flag for flag, value in (("--tls-cert", config.tls_cert), ("--tls-key", config.tls_key))
                   if value is None]
        if missing:
            ports = ", ".join(f for f, p in (("--tls-port", config.tls_port), ("--https-port", config.https_port)) if p)
            ports = ports or "a 'tls'/'https' socket passed by systemd (LISTEN_FDNAMES)"
            raise TlsConfigError(f"{ports} needs {' and '.join(missing)}: give the PEM certificate chain and its "
                                 "private key (docs/tls.md shows how to make them)")
        return
    given = [flag for flag, value in (("--tls-cert", config.tls_cert), ("--tls-key", config.tls_key),
                                      ("--tls-client-ca", config.tls_client_ca)) if value is not None]
    if given:
        # Refused rather than warned: the operator believes traffic is encrypted, and it would not be.
        raise TlsConfigError(f"{', '.join(given)} given but no TLS port is on, so nothing would be encrypted; "
                             "add --tls-port PORT and/or --https-port PORT, or drop the TLS flags")


def _readable(flag: str, path: Path) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise TlsConfigError(f"cannot read {flag} {path}: {exc.strerror or exc}; check the path and that the "
                             "server's user may read it") from None


def build_context(config: Config) -> ssl.SSLContext:
    """A server context from the certificate flags (TLS 1.2 and 1.3 only), or TlsConfigError."""
    cert, key, client_ca = config.tls_cert, config.tls_key, config.tls_client_ca
    if cert is None or key is None:
        raise TlsConfigError("--tls-cert and --tls-key are both needed for TLS")
    _readable("--tls-cert", cert)
    _readable("--tls-key", key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: ppy's clients keep connections open rather than resume sessions, and a
    # ticket arriving after the handshake would make a persistent client's "is it idle?" check fail.
    ctx.num_tickets = 0
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise TlsConfigError(f"--tls-key {key} is not the private key of --tls-cert {cert}; give the key the "
                                 "certificate was made from") from None
        raise TlsConfigError(f"cannot load --tls-cert {cert} / --tls-key {key}: {exc.reason or exc}; both must be "
                             "PEM files (the key unencrypted)") from None
    except (OSError, ValueError) as exc:
        raise TlsConfigError(f"cannot load --tls-cert {cert} / --tls-key {key}: {exc}") from None
    if client_ca is not None:
        _readable("--tls-client-ca", client_ca)
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TlsConfigError(f"cannot load --tls-client-ca {client_ca}: {getattr(exc, 'reason', None) or exc}; "
                                 "it must hold PEM CA certificates") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Tls:
    """The context new TLS connections get: fixed ``listening`` context, swappable ``current`` one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.current = build_context(config)
        self.listening = build_context(config)  # same settings, so a handshake is consistent either way
        self.listening.sni_callback = self._select
        self.reloads = 0

    def _select(self, conn: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        conn.context = self.current

    def reload(self) -> bool:
        """Load the files again for new connections; on any error keep the old context and log why."""
        try:
            fresh = build_context(self.config)
        except TlsConfigError as exc:
            log.error("TLS reload failed, still serving the previous certificate: %s", exc)
            return False
        self.current = fresh
        self.reloads += 1
        log.warning("TLS certificate, key%s reloaded from %s for new connections",
                    " and client CA" if self.config.tls_client_ca else "", self.config.tls_cert)
        return True


def load(config: Config, passed: bool = False) -> Tls | None:
    """The server's TLS state, or None when no TLS port is on (nor ``passed`` by systemd); TlsConfigError
    says what to fix."""
    check_flags(config, passed)
    return Tls(config) if wanted(config) or passed else None


def reload_tls(tls: Tls | None) -> None:
    """SIGHUP in a serving process: new certificate files for new connections; open ones are untouched."""
    if tls is None:
        log.warning("SIGHUP: no TLS port, nothing to reload (restart the process to load new code)")
        return
    tls.reload()


def peer_subject(transport: Any) -> str | None:
    """The client certificate's subject as ``CN=...,O=...`` (mutual TLS), or None: what the TCP and
    HTTPS front ends name a client by in their logs, beside its address."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert:
        return None
    return ",".join(f"{_SHORT.get(k, k)}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)


def client_name(peer: object, subject: str | None) -> str:
    """A client as log lines name it: its address, and its certificate's subject under mutual TLS."""
    return f"{peer} (client certificate {subject})" if subject else str(peer)


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
          "localityName": "L", "stateOrProvinceName": "ST", "emailAddress": "emailAddress"}


#: Where the event loop decrypts into, shared by every TLS connection of the process: a connection
#: copies its bytes out in ``buffer_updated`` before the loop reads for anyone else.
_DECRYPTED = memoryview(bytearray(256 * 1024))


class DecryptsInPlace(asyncio.BufferedProtocol):
    """Mixed into the TLS front ends' protocols, after them: ``class TlsConnection(Connection, DecryptsInPlace)``.

    Why: given a plain ``data_received`` protocol, the event loop's TLS layer decrypts each read into
    a fresh 256 KiB ``bytes`` — past glibc's mmap threshold, so an mmap, an mremap and a munmap per
    read, over a quarter of a TLS call's CPU time.  A buffered protocol gets the plaintext written
    into one reused buffer instead, and hands on only the bytes that arrived.  (uvloop takes a protocol
    as buffered only when it is not an ``asyncio.Protocol``: the front ends derive from ``BaseProtocol``.)
    """

    data_received: Callable[[bytes], None]  # the front end's own

    def get_buffer(self, sizehint: int) -> memoryview:
        return _DECRYPTED

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_DECRYPTED[:nbytes]))
