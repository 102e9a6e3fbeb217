"""The audit signing key: Ed25519, made once on first use in a folder of its own.

The private key file is created with mode 0600 before a byte is written to it and is never
logged; the public key is exported next to it, since a verifier needs only that.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from katagate.schemas.errors import KatagateError

PRIVATE_FILE = "audit.key"
PUBLIC_FILE = "audit.pub"


class AuditKeyError(KatagateError, ValueError):
    """A key file is missing, unreadable, too open, or not an Ed25519 key."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 over the DER SubjectPublicKeyInfo, uppercase hex pairs joined by colons."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(spki).digest())


@dataclass(frozen=True)
class AuditKey:
    private_key: Ed25519PrivateKey = field(repr=False)
    key_id: str
    public_path: Path

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_or_create(folder: Path) -> AuditKey:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path, public_path = folder / PRIVATE_FILE, folder / PUBLIC_FILE
    if not private_path.exists():
        _create(folder)
    mode = private_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise AuditKeyError(f"{private_path} is readable by others (mode {mode:o}); expected 600")
    loaded = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise AuditKeyError(f"{private_path} is not an Ed25519 private key")
    if not public_path.exists():  # exported again if someone removed it
        _replace(folder, PUBLIC_FILE, public_pem(loaded.public_key()), private=False)
    return AuditKey(loaded, key_id(loaded.public_key()), public_path)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        loaded = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditKeyError(f"cannot read the public key {path}: {exc}") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise AuditKeyError(f"{path} is not an Ed25519 public key")
    return loaded


def _create(folder: Path) -> None:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Temporary names, then rename: a crash never leaves half a key.
    _replace(folder, PRIVATE_FILE, private, private=True)
    _replace(folder, PUBLIC_FILE, public_pem(key.public_key()), private=False)


def _replace(folder: Path, name: str, data: bytes, *, private: bool) -> None:
    tmp = folder / f"{name}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, folder / name)
