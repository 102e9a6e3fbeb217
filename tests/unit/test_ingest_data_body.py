"""The DATA body reader: aiosmtpd's rules (final dot, transparency, limits) on one buffer."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katagate.ingest.data_body import DataBody, Overflow

LIMIT = 1001


def read(wire: bytes, *, max_bytes: int | None = 10_000, max_line: int = LIMIT,
         reader_limit: int = LIMIT) -> tuple[DataBody, bytes]:
    """Reads `wire` from a real StreamReader as the server does; returns the body and what the
    reader still holds (the next commands)."""
    async def run() -> tuple[DataBody, bytes]:
        reader = asyncio.StreamReader(limit=reader_limit)
        reader.feed_data(wire)
        reader.feed_eof()
        body = DataBody(max_bytes=max_bytes, max_line=max_line)
        await body.read(reader)
        return body, await reader.read()
    return asyncio.run(run())


def reference(wire: bytes) -> bytes:
    """RFC 5321 4.5.2 written out: lines end at CRLF, the data at a line of one dot, and a
    leading dot is removed from every other line."""
    end = 0 if wire.startswith(b".\r\n") else wire.index(b"\r\n.\r\n") + 2
    lines = re.split(rb"(?<=\r\n)", wire[:end])
    return b"".join(line[1:] if line.startswith(b".") else line for line in lines if line)


def test_the_final_dot_ends_the_data_and_the_next_command_stays_unread() -> None:
    body, rest = read(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    assert body.done
    assert body.overflow is Overflow.NONE
    assert body.content() == b"Subject: x\r\n\r\nhello\r\n"
    assert rest == b"QUIT\r\n"


def test_an_empty_message_is_just_the_dot() -> None:
    body, rest = read(b".\r\nMAIL FROM:<a@b>\r\n")
    assert body.content() == b""
    assert rest == b"MAIL FROM:<a@b>\r\n"


def test_a_leading_dot_is_removed_from_every_line_that_has_one() -> None:
    body, _ = read(b"..\r\n.x\r\n...y\r\nz.\r\n.\r\n")
    assert body.content() == b".\r\nx\r\n..y\r\nz.\r\n"


@pytest.mark.parametrize("smuggled", [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\r\n.\r\r\n"])
def test_no_bare_newline_shape_ends_the_data(smuggled: bytes) -> None:
    wire = b"a" + smuggled + b"MAIL FROM:<evil@x>\r\n.\r\n"
    body, rest = read(wire)
    assert rest == b""
    assert body.content() == reference(wire)
    assert b"MAIL FROM:<evil@x>" in reference(wire)


def test_a_line_over_the_limit_is_refused_after_the_whole_data_arrived() -> None:
    body, rest = read(b"ok\r\n" + b"x" * 3000 + b"\r\n.\r\nQUIT\r\n")
    assert body.overflow is Overflow.LINE_TOO_LONG
    assert body.content() == b""
    assert rest == b"QUIT\r\n"


def test_a_line_at_the_limit_is_kept_and_one_over_it_is_refused() -> None:
    fits = b"x" * (LIMIT - 2) + b"\r\n"
    assert read(fits + b".\r\n")[0].content() == fits
    assert read(b"x" + fits + b".\r\n")[0].overflow is Overflow.LINE_TOO_LONG


def test_a_dot_line_inside_an_overlong_line_does_not_end_the_data() -> None:
    # The overlong line arrives in fragments; what follows its last fragment is still that line.
    body, rest = read(b"x" * 2500 + b".\r\nstill data\r\n.\r\nQUIT\r\n")
    assert body.overflow is Overflow.LINE_TOO_LONG
    assert rest == b"QUIT\r\n"


def test_data_over_the_size_limit_is_read_to_the_end_then_refused() -> None:
    body, rest = read(b"y" * 98 + b"\r\n" + b"z" * 98 + b"\r\n.\r\nQUIT\r\n", max_bytes=150)
    assert body.overflow is Overflow.TOO_MUCH
    assert body.content() == b""
    assert rest == b"QUIT\r\n"


def test_the_size_counts_octets_on_the_wire_dots_included() -> None:
    # aiosmtpd counts before removing the dot: 100 octets on the wire against a limit of 99.
    line = b"." + b"a" * 97 + b"\r\n"
    assert read(line + b".\r\n", max_bytes=99)[0].overflow is Overflow.TOO_MUCH
    assert read(line + b".\r\n", max_bytes=100)[0].content() == line[1:]


def test_the_first_limit_met_is_the_one_reported() -> None:
    body, _ = read(b"w" * 200 + b"\r\n" + b"v" * 1500 + b"\r\n.\r\n", max_bytes=100)
    assert body.overflow is Overflow.TOO_MUCH


def test_the_buffer_is_released_once_taken() -> None:
    body, _ = read(b"abc\r\n.\r\n")
    assert body.content() == b"abc\r\n"
    assert body.content() == b""


_octets = st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\x00", b"..", b"\r\n."]),
                   max_size=60).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(_octets)
def test_any_body_reads_as_rfc_5321_says(payload: bytes) -> None:
    wire = payload + b"\r\n.\r\nNEXT\r\n"
    body, rest = read(wire, max_bytes=None)
    assert body.overflow is Overflow.NONE
    assert body.content() == reference(wire)
    stop = 3 if wire.startswith(b".\r\n") else wire.index(b"\r\n.\r\n") + 5
    assert rest == wire[stop:]
