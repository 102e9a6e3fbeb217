"""Message ids, pure: time-sortable and unique, 26 characters of Crockford base32.

The id doubles as the KATA scanId, which may hold no spaces or special characters, hence
`[0-9A-Z]` only (schemas.types.MessageId: `[A-Za-z0-9]{8,64}`). Layout as in ULID: 48 bits of
milliseconds since the epoch, then 80 random bits; the caller passes both in, so this stays
free of clocks and randomness.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
LENGTH = 26
ENTROPY_BYTES = 10


def message_id(millis: int, entropy: bytes) -> str:
    if not 0 <= millis < 2**48:
        raise ValueError("millis must fit in 48 bits")
    if len(entropy) != ENTROPY_BYTES:
        raise ValueError(f"entropy must be {ENTROPY_BYTES} bytes")
    value = (millis << 80) | int.from_bytes(entropy, "big")
    chars = []
    for _ in range(LENGTH):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def millis_of(message_id_: str) -> int:
    """The creation time an id carries (ms since the epoch)."""
    value = 0
    for char in message_id_:
        value = (value << 5) | ALPHABET.index(char)
    return value >> 80
