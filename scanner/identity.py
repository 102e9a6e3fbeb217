"""The gateway's sensor identity: a sensor id, a key pair and a self-signed client certificate,
made once on first use and kept in a folder of their own.

The private key file is created with mode 0600 before a byte is written to it and is never
logged or put in an event; only the certificate and its fingerprint leave this module.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from katagate.scanner.fingerprints import spki_fingerprint

KEY_FILE = "sensor.key"
CERT_FILE = "sensor.crt"
ID_FILE = "sensor.id"
CERT_YEARS = 10


@dataclass(frozen=True)
class SensorIdentity:
    sensor_id: str
    key_path: Path
    cert_path: Path
    certificate_pem: str
    fingerprint: str
    created: bool  # made just now: the caller records SensorKeyGenerated

    def __repr__(self) -> str:  # never risk a key path's contents in a log line
        return f"SensorIdentity(sensor_id={self.sensor_id!r}, fingerprint={self.fingerprint!r})"


def load_or_create(folder: Path, now: dt.datetime | None = None) -> SensorIdentity:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, cert_path, id_path = folder / KEY_FILE, folder / CERT_FILE, folder / ID_FILE
    created = False
    if not (key_path.exists() and cert_path.exists() and id_path.exists()):
        _create(folder, now or dt.datetime.now(dt.UTC))
        created = True
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{key_path} is readable by others (mode {mode:o}); expected 600")
    pem = cert_path.read_text(encoding="ascii")
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return SensorIdentity(
        sensor_id=id_path.read_text(encoding="ascii").strip(),
        key_path=key_path,
        cert_path=cert_path,
        certificate_pem=pem,
        fingerprint=spki_fingerprint(certificate),
        created=created,
    )


def _create(folder: Path, now: dt.datetime) -> None:
    sensor_id = f"katagate-{uuid.uuid4()}"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "katagate"),
        x509.NameAttribute(NameOID.COMMON_NAME, sensor_id),
    ])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * CERT_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Write all three to temporary names, then rename: a crash never leaves half an identity.
    _write_private(folder / (KEY_FILE + ".tmp"), key_bytes)
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    (folder / (CERT_FILE + ".tmp")).write_bytes(cert_pem)
    (folder / (ID_FILE + ".tmp")).write_text(sensor_id + "\n", encoding="ascii")
    for name_ in (KEY_FILE, CERT_FILE, ID_FILE):
        os.replace(folder / (name_ + ".tmp"), folder / name_)


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
