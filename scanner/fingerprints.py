"""Public-key fingerprints as both product windows show them: SHA-256 over the DER
SubjectPublicKeyInfo, uppercase hex pairs joined by colons."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def spki_fingerprint(certificate: x509.Certificate) -> str:
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(spki).digest())


def fingerprint_of_der(der: bytes) -> str:
    return spki_fingerprint(x509.load_der_x509_certificate(der))
