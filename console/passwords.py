"""Password hashing with the standard library's scrypt: a random salt per password, the cost
parameters stored with the hash so they can be raised later without locking anyone out."""

from __future__ import annotations

import base64
import hashlib
import hmac

from schemas.errors import KatagateError

# RFC 7914's interactive-login parameters: about 50 ms and 16 MiB per check on this machine.
N, R, P = 2**14, 8, 1
DIGEST_BYTES = 32
SALT_BYTES = 16
MIN_LENGTH, MAX_LENGTH = 8, 1024  # the upper bound keeps one login from costing much more


class BadPassword(KatagateError, ValueError):
    """A new password that is not acceptable; the message says why."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          dklen=DIGEST_BYTES, maxmem=128 * r * (n + p + 2) + 1024 * 1024)


def check_new_password(password: str) -> str:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise BadPassword(f"password: must be {MIN_LENGTH}..{MAX_LENGTH} characters, "
                          f"got {len(password)}")
    if password != password.strip():
        raise BadPassword("password: must not start or end with spaces")
    return password


def hash_password(password: str, salt: bytes) -> str:
    """`scrypt$N$r$p$salt$digest` (base64); the salt comes from the caller (os.urandom)."""
    if len(salt) < SALT_BYTES:
        raise ValueError(f"salt: at least {SALT_BYTES} bytes")
    digest = _scrypt(password, salt, N, R, P)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` hashes to `stored`; a malformed `stored` matches nothing."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password[:MAX_LENGTH + 1], base64.b64decode(salt, validate=True),
                         int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# Checked against when the user name is wrong, so a wrong name costs as long as a wrong password.
DECOY = hash_password("decoy password, never a real one", b"\x00" * SALT_BYTES)
