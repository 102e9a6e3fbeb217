"""header_end: where a CRLF message's header section ends, within a limit, reading no further."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katagate.schemas.raw_mail import header_end

HEAD = b"From: a@example.org\r\nSubject: hi\r\n"


@pytest.mark.parametrize(("data", "end"), [
    (HEAD + b"\r\nbody\r\n", len(HEAD)),
    (HEAD + b"\r\n", len(HEAD)),  # an empty body
    (HEAD + b"\r\n\r\nbody\r\n", len(HEAD)),  # the first empty line counts
    (HEAD + b"\r\nSubject: in the body\r\n\r\nmore\r\n", len(HEAD)),
    (b"\r\nSubject: not a header\r\n\r\nbody\r\n", 0),  # no header section at all
    (b"\r\n", 0),
    (b"", 0),
    (HEAD, len(HEAD)),  # no empty line: all header
    (b"Subject: no final line ending", 29),
])
def test_the_header_section_ends_before_the_first_empty_line(data, end):
    assert header_end(data, 1000) == end
    assert data[end:] == b"" or data[end:].startswith(b"\r\n")


def test_a_header_section_of_exactly_the_limit_fits_and_one_byte_more_does_not():
    data = HEAD + b"\r\nbody\r\n"
    assert header_end(data, len(HEAD)) == len(HEAD)
    assert header_end(data, len(HEAD) - 1) is None
    assert header_end(HEAD, len(HEAD)) == len(HEAD)
    assert header_end(HEAD, len(HEAD) - 1) is None


def test_an_empty_line_beyond_the_limit_is_not_looked_for():
    data = HEAD + b"X-Filler: x\r\n" * 10_000 + b"\r\nbody\r\n"
    assert header_end(data, 1024) is None
    assert header_end(data, len(data)) == len(data) - len(b"\r\nbody\r\n")


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match="limit"):
        header_end(HEAD, -1)


def _oracle(data: bytes, limit: int) -> int | None:
    """The definition, reading everything."""
    if data.startswith(b"\r\n"):
        return 0
    found = data.find(b"\r\n\r\n")
    end = len(data) if found < 0 else found + 2
    return end if end <= limit else None


LINES = st.lists(st.sampled_from([b"\r\n", b"A: b\r\n", b" c\r\n", b"x", b"\r", b"\n"]),
                 max_size=30).map(b"".join)


@given(LINES, st.integers(min_value=0, max_value=120))
def test_any_data_gives_the_definition_reading_at_most_limit_plus_two_bytes(data, limit):
    assert header_end(data, limit) == _oracle(data, limit)
    assert header_end(data[: limit + 2], limit) == header_end(data, limit)
