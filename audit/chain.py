"""The hash chain over one partition: pure functions, no I/O.

`h_n = SHA-256(h_{n-1} || canonical(record_n))`, `h_{-1}` = 32 zero bytes. The chain covers
the records a `read_committed` reader sees, in offset order. It hashes content and order only:
offsets are not part of `canonical`, so a faithful copy of the log (whose offsets differ, since
transaction markers occupy offsets) has the same chain; checkpoints carry the offsets as
information. The exact byte layout is documented in audit/README.md.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence

from katagate.eventlog.records import Consumed

ZERO_HEAD = bytes(32)
# A version tag in front of every record's bytes: a later layout can never collide with this one.
CANONICAL_TAG = b"KGA1"

_LEN = struct.Struct(">i")  # signed 32-bit big-endian; -1 marks null (as Kafka's own encoding)
_COUNT = struct.Struct(">I")

Headers = Sequence[tuple[str, bytes | None]]


# A committed record as the audit sees it: the plumbing's own record type; its offset is
# information, never hashed.
LogRecord = Consumed


def _field(data: bytes | None) -> bytes:
    if data is None:
        return _LEN.pack(-1)
    return _LEN.pack(len(data)) + data


def canonical(key: bytes | None, value: bytes | None, headers: Headers = ()) -> bytes:
    """`KGA1 || field(key) || field(value) || u32(len(headers)) || (field(name) || field(v))*`
    with `field(x)` = i32 length (-1 for null) then the bytes; header names in UTF-8, headers
    in record order (Kafka keeps their order and allows repeats)."""
    parts = [CANONICAL_TAG, _field(key), _field(value), _COUNT.pack(len(headers))]
    for name, header_value in headers:
        parts.append(_field(name.encode("utf-8")))
        parts.append(_field(header_value))
    return b"".join(parts)


def record_bytes(record: LogRecord) -> bytes:
    return canonical(record.key, record.value, record.headers)


def next_head(head: bytes, record: LogRecord) -> bytes:
    return hashlib.sha256(head + record_bytes(record)).digest()


def chain_head(records: Iterable[LogRecord], start: bytes = ZERO_HEAD) -> bytes:
    """The head after hashing `records` in order onto `start`."""
    head = start
    for record in records:
        head = next_head(head, record)
    return head
