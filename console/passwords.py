"""Password hashing: argon2id (RFC 9106) with a random salt per password and the cost
parameters stored in the hash. Hashes of the console's earlier releases (`scrypt$N$r$p$salt$
digest`, hashlib.scrypt) still verify, and `needs_upgrade` says so: the account store rehashes
them as argon2id at the next successful sign-in, when the password is at hand."""

from __future__ import annotations

import base64
import hashlib
import hmac

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from katagate.schemas.errors import KatagateError

# OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): about 25 ms a check on this machine,
# and the memory bound keeps many parallel sign-ins from exhausting a small host.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32,
                        salt_len=16, type=Type.ID)
MIN_LENGTH, MAX_LENGTH = 8, 1024  # the upper bound keeps one login from costing much more


class BadPassword(KatagateError, ValueError):
    """A new password that is not acceptable; the message says why."""


def check_new_password(password: str) -> str:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise BadPassword(f"password: must be {MIN_LENGTH}..{MAX_LENGTH} characters, "
                          f"got {len(password)}")
    if password != password.strip():
        raise BadPassword("password: must not start or end with spaces")
    return password


def hash_password(password: str) -> str:
    """`$argon2id$v=19$m=...,t=...,p=...$salt$digest`, with a fresh random salt."""
    return HASHER.hash(password)


def _verify_scrypt(password: str, stored: str) -> bool:
    """The earlier releases' `scrypt$N$r$p$salt$digest` (base64)."""
    scheme, n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    expected = base64.b64decode(digest, validate=True)
    cost, block, lanes = int(n), int(r), int(p)
    actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt, validate=True),
                            n=cost, r=block, p=lanes, dklen=len(expected),
                            maxmem=128 * block * (cost + lanes + 2) + 1024 * 1024)
    return hmac.compare_digest(actual, expected)


def verify_password(password: str, stored: str) -> bool:
    """True when `password` hashes to `stored`; a malformed `stored` matches nothing."""
    password = password[:MAX_LENGTH + 1]
    try:
        if stored.startswith("$argon2id$"):
            return HASHER.verify(stored, password)
        return _verify_scrypt(password, stored)
    except (VerifyMismatchError, VerificationError, InvalidHashError, ValueError):
        return False


def needs_upgrade(stored: str) -> bool:
    """True for a hash that is not argon2id with today's parameters (an scrypt one, say)."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return HASHER.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


# Checked against when the user name is wrong, so a wrong name costs as long as a wrong password.
DECOY = hash_password("decoy password, never a real one")
