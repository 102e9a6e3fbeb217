"""The local broker's TLS material, made with `cryptography`: a CA of its own, and one broker
certificate signed by it for the loopback names. The broker reads its key from a PKCS#12
store (a file-based PEM key store needs an encrypted key that Java must then decrypt); clients
trust the CA's PEM file. Keys are written mode 0600 and never leave the data folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825  # the longest a publicly trusted server certificate was allowed; rotate sooner
BROKER_CN = "broker"  # the brokers' own principal (User:broker) when they authenticate by TLS


@dataclass(frozen=True)
class TlsFiles:
    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def broker_store(self) -> Path:
        return self.folder / "broker.p12"

    @property
    def broker_cert(self) -> Path:
        return self.folder / "broker.pem"

    @property
    def broker_key(self) -> Path:
        return self.folder / "broker-key.pem"

    @property
    def store_password_file(self) -> Path:
        return self.folder / "broker.p12.password"

    def store_password(self) -> str:
        return self.store_password_file.read_text(encoding="ascii").strip()

    def exists(self) -> bool:
        return all(path.exists() for path in (self.ca_cert, self.broker_store,
                                              self.broker_cert, self.broker_key,
                                              self.store_password_file))


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "katagate local"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey,
                 signer: ec.EllipticCurvePrivateKey, now: dt.datetime, *, ca: bool,
                 ) -> x509.CertificateBuilder:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
    if ca:
        return builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    return (builder
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
            # Server for clients, client towards the controllers and the other brokers.
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                signer.public_key()), critical=False))


def ensure_tls(folder: Path, now: dt.datetime | None = None) -> TlsFiles:
    """The CA and broker certificate in `folder`, made on first use and kept afterwards."""
    files = TlsFiles(folder)
    if files.exists():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    now = now or dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("katagate local CA")
    ca_cert = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, now,
                           ca=True).sign(ca_key, hashes.SHA256())
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = _certificate(_name(BROKER_CN), ca_name, broker_key.public_key(), ca_key, now,
                               ca=False).sign(ca_key, hashes.SHA256())
    password = secrets.token_urlsafe(24)
    pem = serialization.Encoding.PEM
    unencrypted = serialization.NoEncryption()
    _write_private(files.ca_key, ca_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, unencrypted))
    _write_private(files.broker_key, broker_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, unencrypted))
    _write_private(files.store_password_file, password.encode("ascii"))
    _write_private(files.broker_store, pkcs12.serialize_key_and_certificates(
        b"broker", broker_key, broker_cert, [ca_cert],
        serialization.BestAvailableEncryption(password.encode("ascii"))))
    files.broker_cert.write_bytes(broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    return files
