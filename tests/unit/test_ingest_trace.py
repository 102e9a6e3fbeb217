"""Ingest's Received field (RFC 5321 4.4, RFC 5322 3.6.7) and the hop count, pure: its format,
what a client's text can do to it (nothing), and the loop refusal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katagate.ingest.handler import inspect
from katagate.ingest.settings import IngestSettings
from katagate.ingest.trace import check_hops, hop_count, received_field
from katagate.schemas.raw_mail import TRACE_RESERVE

AT = datetime(2026, 12, 3, 10, 35, 42, tzinfo=UTC)
ID = "01KBQ7ZJ8N0000000000000000"


def field(**overrides: object) -> bytes:
    given: dict[str, object] = {
        "helo": "mx.example.org", "rdns": "mail.example.org", "client_ip": "192.0.2.7",
        "gateway": "gw.example.net", "extended": True, "tls": False, "message_id": ID,
        "recipients": ("bob@example.net",), "at": AT}
    return received_field(**{**given, **overrides})  # type: ignore[arg-type]


def test_the_field_names_the_client_the_gateway_the_protocol_the_id_the_recipient_and_time():
    assert field() == (
        b"Received: from mx.example.org (mail.example.org [192.0.2.7])\r\n"
        b"\tby gw.example.net with ESMTP id " + ID.encode() + b"\r\n"
        b"\tfor <bob@example.net>; Thu, 03 Dec 2026 10:35:42 +0000\r\n")


@pytest.mark.parametrize(("extended", "tls", "word"), [
    (True, True, b"ESMTPS"), (True, False, b"ESMTP"), (False, False, b"SMTP")])
def test_with_says_how_the_message_came(extended, tls, word):
    assert b" with " + word + b" id " in field(extended=extended, tls=tls)


def test_no_reverse_name_an_ipv6_client_and_several_recipients():
    got = field(rdns=None, client_ip="2001:db8::1", recipients=("a@x.example", "b@x.example"),
                at=AT.astimezone(timezone(timedelta(hours=3))))
    assert got.startswith(b"Received: from mx.example.org (unknown [IPv6:2001:db8::1])\r\n")
    assert b"for <" not in got  # several recipients: none is named to the others
    assert got.endswith(b" id " + ID.encode() + b"; Thu, 03 Dec 2026 13:35:42 +0300\r\n")


def test_an_ipv6_zone_index_never_reaches_the_field():
    # Given an address whose zone index (which Python keeps, whatever it holds) ends the line
    got = field(client_ip="fe80::1%\r\nX-Injected: yes")
    # Then the field names the address without it, in one field of whole lines
    assert got.startswith(b"Received: from mx.example.org (mail.example.org [IPv6:fe80::1])\r\n")
    assert b"X-Injected" not in got


HOSTILE_HELO = ["evil)\r\nX-KATA-Verdict: not-detected", "a(b)c;d", "x\tBcc:", "(",
                "[1.2.3.4]);Received:", ""]


@pytest.mark.parametrize("helo", HOSTILE_HELO)
def test_a_hostile_helo_or_reverse_name_cannot_break_or_add_a_field(helo):
    # Given client-chosen text with line breaks, comments, ';' and field names
    got = field(helo=helo, rdns=helo + ".example", recipients=('"x;y(z)"@example.net',))
    # Then the field is still two lines, one field, its clauses where they belong
    lines = got.split(b"\r\n")
    assert len(lines) == 3
    assert lines[-1] == b""
    assert lines[1].startswith(b"\tby gw.example.net with ESMTP id ")
    assert re.fullmatch(rb"Received: from [A-Za-z0-9.\-:\[\]_]+ \(unknown \[192\.0\.2\.7\]\)",
                        lines[0]), lines[0]
    assert got.count(b"(") == got.count(b")") == 1
    assert got.count(b";") == 1
    assert b"for <" not in got  # a quoted local part is not named
    # And a mail parser sees one Received field whose date is the time given
    message = message_from_bytes(got + b"\r\nbody")
    assert len(message.get_all("Received")) == 1
    assert len(message.keys()) == 1
    assert parsedate_to_datetime(str(message["Received"]).rsplit(";", 1)[1]) == AT


@given(helo=st.text(max_size=300), rdns=st.none() | st.text(max_size=300),
       recipient=st.text(max_size=300))
def test_whatever_a_client_chooses_the_field_is_one_field_of_whole_lines(helo, rdns, recipient):
    got = field(helo=helo, rdns=rdns, recipients=(recipient,))
    lines = got.split(b"\r\n")
    assert lines[-1] == b""
    assert lines[0].startswith(b"Received: from ")
    assert all(line.startswith(b"\t") for line in lines[1:-1])
    assert all(0x20 <= c < 0x7F or c == 0x09 for c in got.replace(b"\r\n", b""))
    assert got.count(b";") == 1
    assert got.count(b"(") == got.count(b")") == 1
    assert len(got) <= TRACE_RESERVE


def test_the_field_fits_the_reserve_the_subject_tag_allows_at_its_largest():
    got = field(helo="h" * 255, rdns="r" * 253, client_ip="2001:db8:1:2:3:4:5:6",
                gateway="g" * 255, recipients=("l" * 64 + "@" + "d" * 190,))
    assert len(got) <= TRACE_RESERVE
    assert max(len(line) for line in got.split(b"\r\n")) <= 998


def received(n: int) -> bytes:
    return b"".join(b"Received: from hop%d\r\n\tby x; Thu, 03 Dec 2026 10:00:00 +0000\r\n" % i
                    for i in range(n))


def test_hops_are_the_received_fields_of_the_header_section_in_any_case():
    data = (received(3) + b"RECEIVED : from a\r\nreceived:b\r\nX-Received: no\r\n"
            b" Received: a continuation, not a field\r\nSubject: s\r\n\r\n" + received(5))
    assert hop_count(data) == 5  # the body's "Received:" lines are not counted


def test_a_message_that_would_carry_more_than_the_limit_with_ours_is_a_loop():
    assert check_hops(received(49) + b"\r\nbody", 50) is None
    refusal = check_hops(received(50) + b"\r\nbody", 50)
    assert refusal is not None
    assert str(refusal) == ("554 5.4.6 Too many hops: 50 Received header fields, limit 50 "
                            "(a mail loop?)")


def test_ingest_refuses_a_looping_message_with_554_5_4_6():
    settings = IngestSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.hop_count_limit == 50
    looping = inspect(received(60) + b"Subject: s\r\n\r\nbody\r\n", settings)
    assert looping.refusal is not None
    assert looping.refusal.enhanced == "5.4.6"
    assert inspect(received(2) + b"Subject: s\r\n\r\nbody\r\n", settings).refusal is None
