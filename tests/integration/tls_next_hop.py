"""Next-hop SMTP servers offering STARTTLS on real sockets (aiosmtpd), with certificates made
here with `cryptography`: a CA and leaves it signs, or a self-signed leaf."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def server_context(self, folder: Path, name: str) -> ssl.SSLContext:
        (folder / f"{name}.pem").write_bytes(self.pem())
        (folder / f"{name}.key").write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / f"{name}.pem", folder / f"{name}.key")
        return context


def issue(common_name: str, *, names: tuple[str, ...] = (), issuer: Issued | None = None,
          ca: bool = False) -> Issued:
    """A certificate for `names` (DNS names or IP addresses), signed by `issuer`, or by its own
    key when there is none (self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer = issuer.key if issuer else key
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   signer.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n)
                                                                     for n in names]), False)
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass
class Seen:
    """What a next hop was sent: every MAIL command (and whether it came under TLS), every
    message taken."""

    mail: list[tuple[str, bool]] = field(default_factory=list)
    messages: list[tuple[bytes, bool]] = field(default_factory=list)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        self.mail.append((address, session.ssl is not None))
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((envelope.original_content or b"", session.ssl is not None))
        return "250 2.0.0 Ok: queued"


class _Refusing(SMTP):
    """Offers STARTTLS, then refuses it for a temporary reason."""

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        await self.push("454 4.7.0 TLS not available due to temporary reason")


class _RefusingController(Controller):
    def factory(self) -> SMTP:
        return _Refusing(self.handler, **self.SMTP_kwargs)


class TlsNextHop:
    """An aiosmtpd next hop on 127.0.0.1 (on `port`, else a free one), offering STARTTLS with
    `context` (none: no offer); with `refuse`, answering it 454."""

    def __init__(self, context: ssl.SSLContext | None, port: int | None = None,
                 refuse: bool = False, **options: Any) -> None:
        self.seen = Seen()
        self.port = port or free_port()
        kind = _RefusingController if refuse else Controller
        self.controller = kind(self.seen, hostname="127.0.0.1", port=self.port,
                               tls_context=context, **options)

    def __enter__(self) -> TlsNextHop:
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()


def free_port() -> int:
    # aiosmtpd's threaded Controller cannot listen on port 0: pick a free port first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
