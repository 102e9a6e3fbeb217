"""TLS towards the next hop: the security level (Postfix's `smtp_tls_security_level`) and the
context each level speaks with.

- `none`: never STARTTLS.
- `may`: STARTTLS when offered, the certificate not checked (RFC 7435: encryption without
  authentication); not offered or refused (454): plain text; a failed handshake defers (the
  connection is gone).
- `encrypt`: STARTTLS required, the certificate not checked; not offered, refused or failed:
  deferred.
- `verify`: as `encrypt`, and the chain verified against the system store or the CA file, and
  the name (the host, or the name set) against the certificate; a failure defers with the
  verification error as the reason.

The older `next_hop_starttls` names map onto levels: `never` → `none`, `opportunistic` → `may`,
`required` → `verify` (see `STARTTLS_LEVELS`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TlsLevel = Literal["none", "may", "encrypt", "verify"]
STARTTLS_LEVELS: dict[str, TlsLevel] = {
    "never": "none", "opportunistic": "may", "required": "verify"}


@dataclass(frozen=True)
class NextHopTls:
    """How a delivery speaks TLS to the next hop. Built once (`next_hop_tls`): loading the
    system's CA store for every delivery would cost milliseconds each."""

    level: TlsLevel = "may"
    # The context STARTTLS wraps the socket with; compared by identity in the session cache.
    context: ssl.SSLContext = field(default_factory=lambda: unverified_context())
    # The name the certificate must hold (and the SNI sent); None: the host connected to.
    name: str | None = None

    @property
    def required(self) -> bool:
        """No message goes to the next hop in plain text."""
        return self.level in ("encrypt", "verify")


def next_hop_tls(level: TlsLevel, ca_file: Path | None = None,
                 name: str | None = None) -> NextHopTls:
    if level == "verify":
        return NextHopTls(level, verifying_context(ca_file), name)
    return NextHopTls(level, unverified_context(), name)


def verifying_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The chain checked against `ca_file` alone when given (a private CA, not every public
    one), else the system store; the name checked (an IP address against IP SANs)."""
    if ca_file is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def unverified_context() -> ssl.SSLContext:
    """Encryption without authentication, as opportunistic STARTTLS is (RFC 7435)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def ca_file_problem(path: Path) -> str:
    """Why `path` cannot serve as the CA file ("" when it can): it must be a readable file
    holding at least one PEM certificate."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if b"-----BEGIN CERTIFICATE-----" not in text:
        return f"{path} holds no PEM certificate"
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        return f"{path} is not a usable CA file: {exc}"
    return ""
