"""HTTPS to the Central Node with our client certificate and a pinned server key.

The Central Node's certificate is self-signed, so trust comes from pinning, not from a CA: the
server's key fingerprint is compared with the pin right after the handshake and before a single
request byte is written. With no pin yet, the observed fingerprint is returned so the lifecycle
can show and pin it.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import ssl
import threading
from dataclasses import dataclass

from cryptography import x509

from katagate.scanner import metrics
from katagate.scanner.fingerprints import fingerprint_of_der
from katagate.scanner.identity import SensorIdentity

log = logging.getLogger(__name__)
# Expired certificates already warned about (fingerprint, expiry): one line each per process,
# though every lifecycle check opens a new connection.
_WARNED: set[tuple[str, dt.datetime]] = set()

MAX_REPLY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    retry_after_s: float | None
    fingerprint: str
    not_after: dt.datetime | None = None  # the server certificate's expiry


@dataclass(frozen=True)
class Unreachable:
    detail: str


@dataclass(frozen=True)
class PinMismatch:
    observed: str
    pinned: str


Outcome = Reply | Unreachable | PinMismatch
Body = bytes | tuple[bytes, ...] | None  # a tuple is sent part after part


def client_context(identity: SensorIdentity) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Trust is the pinned fingerprint, checked by hand below: a self-signed Central Node
    # certificate has no CA to verify against and no host name to match.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(identity.cert_path, identity.key_path)
    return context


class PinnedTransport:
    """One keep-alive connection per calling thread; the pin is checked on every new one."""

    def __init__(
        self, endpoint: Endpoint, identity: SensorIdentity, pinned: str | None, timeout_s: float
    ) -> None:
        self.endpoint = endpoint
        self._context = client_context(identity)
        self._pinned = pinned
        self._timeout_s = timeout_s
        self._local = threading.local()

    def close(self) -> None:
        connection: http.client.HTTPSConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None
        self._local.fingerprint = None

    def request(
        self, method: str, path: str, body: Body = None, content_type: str | None = None
    ) -> Outcome:
        outcome, stale = self._attempt(method, path, body, content_type)
        if stale:
            # A kept connection the server closed meanwhile fails on first use: once more, fresh.
            outcome, _ = self._attempt(method, path, body, content_type)
        return outcome

    def _connect(
        self,
    ) -> tuple[http.client.HTTPSConnection, str, dt.datetime] | Outcome:
        connection: http.client.HTTPSConnection | None = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None:
            return connection, self._local.fingerprint, self._local.not_after
        connection = http.client.HTTPSConnection(
            self.endpoint.address, self.endpoint.port, timeout=self._timeout_s,
            context=self._context,
        )
        try:
            connection.connect()
        except (OSError, ssl.SSLError) as exc:
            connection.close()
            return Unreachable(f"{type(exc).__name__}: {exc}")
        sock = connection.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        if not der:
            connection.close()
            return Unreachable("the Central Node presented no certificate")
        fingerprint = fingerprint_of_der(der)
        if self._pinned is not None and fingerprint != self._pinned:
            connection.close()
            return PinMismatch(observed=fingerprint, pinned=self._pinned)
        not_after = self._note_expiry(der, fingerprint)
        self._local.connection = connection
        self._local.fingerprint = fingerprint
        self._local.not_after = not_after
        return connection, fingerprint, not_after

    def _note_expiry(self, der: bytes, fingerprint: str) -> dt.datetime:
        # Trust is the pinned key, not the self-signed certificate's dates: refusing an expired
        # one would send every message on unscanned (Skipped, "not connected"). So it is used,
        # and said loudly: a warning once per certificate, and a gauge ops can alert on.
        not_after = x509.load_der_x509_certificate(der).not_valid_after_utc
        metrics.CENTRAL_NODE_CERT_NOT_AFTER.set(not_after.timestamp())
        if not_after < dt.datetime.now(dt.UTC) and (fingerprint, not_after) not in _WARNED:
            _WARNED.add((fingerprint, not_after))
            log.warning("the Central Node's certificate expired on %s (key %s, still pinned): "
                        "ask its administrator to renew it", not_after.isoformat(), fingerprint)
        return not_after

    def _attempt(
        self, method: str, path: str, body: Body, content_type: str | None
    ) -> tuple[Outcome, bool]:
        """The outcome, and whether it was a reused connection that went stale."""
        reused = getattr(self._local, "connection", None) is not None
        connected = self._connect()
        if not isinstance(connected, tuple):
            return connected, False
        connection, fingerprint, not_after = connected
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if isinstance(body, tuple):
            # With the length given, http.client sends the parts as they are (not chunked).
            headers["Content-Length"] = str(sum(len(part) for part in body))
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_REPLY_BYTES + 1)
            retry_after = response.getheader("Retry-After")
            if response.will_close:
                self.close()
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            self.close()
            return Unreachable(f"{type(exc).__name__}: {exc}"), reused
        if len(data) > MAX_REPLY_BYTES:
            self.close()
            return Reply(response.status, b"", None, fingerprint, not_after), False
        return Reply(response.status, data, _seconds(retry_after), fingerprint, not_after), False


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
