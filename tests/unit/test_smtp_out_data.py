"""The next hop gets, after the 354, exactly what smtplib would send, in pieces."""

from __future__ import annotations

import smtplib

from hypothesis import given, settings
from hypothesis import strategies as st

from katagate.decider.smtp_client import data_pieces


def smtplib_would_send(data: bytes) -> bytes:
    quoted = smtplib._quote_periods(data)  # type: ignore[attr-defined]
    if quoted[-2:] != b"\r\n":
        quoted += b"\r\n"
    return quoted + b".\r\n"


def test_leading_dots_are_stuffed_in_every_piece() -> None:
    data = b"".join(b".line %d\r\n" % i for i in range(1000))
    pieces = list(data_pieces(data, size=100))
    assert len(pieces) > 50
    assert all(p.startswith(b"..") for p in pieces[:-1])
    assert b"".join(pieces) == smtplib_would_send(data)


def test_a_message_without_a_final_crlf_gets_one() -> None:
    assert b"".join(data_pieces(b"abc")) == b"abc\r\n.\r\n"
    assert b"".join(data_pieces(b"")) == b"\r\n.\r\n"


def test_no_piece_is_much_larger_than_asked() -> None:
    data = b"x" * 70 + b"\r\n"
    pieces = list(data_pieces(data * 10_000, size=4096))
    assert max(len(p) for p in pieces) < 4096 + len(data)


_lines = st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b".\r\n", b"x" * 30]),
                  max_size=80).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(_lines, st.integers(min_value=1, max_value=40))
def test_any_data_in_any_piece_size_is_what_smtplib_sends(data: bytes, size: int) -> None:
    assert b"".join(data_pieces(data, size=size)) == smtplib_would_send(data)
