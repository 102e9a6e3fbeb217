"""The chain and its canonical bytes: pure, no broker."""

from __future__ import annotations

import hashlib

from katagate.audit.chain import ZERO_HEAD, LogRecord, canonical, chain_head, next_head


def rec(offset: int, value: bytes | None, key: bytes | None = b"k",
        headers: tuple[tuple[str, bytes | None], ...] = ()) -> LogRecord:
    return LogRecord("t.mail", 0, offset, key, value, headers)


def test_canonical_bytes_are_the_documented_layout() -> None:
    got = canonical(b"ab", None, [("h", b"x"), ("n", None)])
    assert got == (b"KGA1" + b"\x00\x00\x00\x02ab" + b"\xff\xff\xff\xff" + b"\x00\x00\x00\x02"
                   + b"\x00\x00\x00\x01h" + b"\x00\x00\x00\x01x"
                   + b"\x00\x00\x00\x01n" + b"\xff\xff\xff\xff")


def test_null_and_empty_differ_and_fields_cannot_shift() -> None:
    assert canonical(None, b"") != canonical(b"", b"")
    assert canonical(b"a", b"bc") != canonical(b"ab", b"c")
    assert canonical(b"k", b"v", [("a", b"b")]) != canonical(b"k", b"v", [("ab", b"")])
    assert canonical(b"k", b"v", [("a", b"1"), ("b", b"2")]) != canonical(
        b"k", b"v", [("b", b"2"), ("a", b"1")])


def test_the_first_head_hashes_onto_32_zero_bytes() -> None:
    given = rec(0, b"v")
    then = hashlib.sha256(bytes(32) + canonical(b"k", b"v")).digest()
    assert next_head(ZERO_HEAD, given) == then == chain_head([given])


def test_the_chain_depends_on_content_and_order_not_offsets() -> None:
    records = [rec(0, b"a"), rec(1, b"b"), rec(2, b"c")]
    moved = [rec(10, b"a"), rec(13, b"b"), rec(20, b"c")]  # markers between them, or a copy
    assert chain_head(records) == chain_head(moved)
    assert chain_head(records) != chain_head([records[1], records[0], records[2]])
    assert chain_head(records) != chain_head(records[:1] + records[2:])
    assert chain_head(records) != chain_head([rec(0, b"a"), rec(1, b"B"), rec(2, b"c")])


def test_a_chain_continues_from_a_head() -> None:
    records = [rec(i, bytes([i])) for i in range(6)]
    middle = chain_head(records[:3])
    assert chain_head(records[3:], middle) == chain_head(records)
