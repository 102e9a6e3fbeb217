"""The Central Node's key pair (one PEM file in the state folder) and certificate fingerprints.

Key and certificate share one file so that a rotation is a single atomic rename: a server that
reads the file never sees a new key with an old certificate.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from katagate.kata_emulator.errors import EmulatorError

KEY_FILE = "server.pem"


def spki_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 over the DER SubjectPublicKeyInfo, as "AB:CD:..." (the gateway shows the same)."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(spki).digest())


@dataclass(frozen=True)
class ServerKey:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return spki_fingerprint(self.cert)


def key_path(state_dir: Path) -> Path:
    return state_dir / KEY_FILE


def load_server_key(state_dir: Path) -> ServerKey:
    """The current key pair, generated on first use."""
    path = key_path(state_dir)
    if not path.exists():
        _write(path, _generate(), replace=False)
    return _parse(path.read_bytes(), path)


def rotate_server_key(state_dir: Path) -> ServerKey:
    """Replace the key pair (the "swapped server key" fault); new connections get the new one."""
    path = key_path(state_dir)
    _write(path, _generate(), replace=True)
    return _parse(path.read_bytes(), path)


def expire_certificate(state_dir: Path) -> ServerKey:
    """Re-issue the certificate for the same key, expired since yesterday (the expired
    certificate fault): the key fingerprint, which the gateway pins, does not change."""
    path = key_path(state_dir)
    current = load_server_key(state_dir)
    now = datetime.datetime.now(datetime.UTC)
    _write(path, _generate(current.key, not_before=now - datetime.timedelta(days=366),
                           not_after=now - datetime.timedelta(days=1)), replace=True)
    return _parse(path.read_bytes(), path)


def _generate(key: ec.EllipticCurvePrivateKey | None = None, *,
              not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "KATA Central Node emulator"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "katagate"),
    ])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after or now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem + cert.public_bytes(Encoding.PEM)


def _write(path: Path, pem: bytes, *, replace: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600, so the private key is never readable by others.
    fd, tmp = tempfile.mkstemp(prefix=".server-", suffix=".pem", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):  # two first users race: one key wins
                os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _parse(pem: bytes, path: Path) -> ServerKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise EmulatorError(f"{path}: not a readable key pair ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise EmulatorError(f"{path}: expected an EC private key")
    return ServerKey(key=key, cert=cert)
