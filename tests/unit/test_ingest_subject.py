"""Subject decoding: RFC 2047, folding, missing, hostile; bounded, never raising."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katagate.ingest.handler import inline
from katagate.ingest.subject import HEADER_BLOCK_CAP, check_subject_fields, decode_subject


def message(*headers: bytes, body: bytes = b"body\r\n") -> bytes:
    return b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


@pytest.mark.parametrize(("header", "expected"), [
    (b"Subject: plain text", "plain text"),
    (b"subject:no space", "no space"),
    (b"SUBJECT :  spaced  ", "spaced"),
    (b"Subject: =?utf-8?q?h=C3=A9llo?=", "h\u00e9llo"),
    (b"Subject: =?UTF-8?B?w6ljb2xl?=", "\u00e9cole"),
    (b"Subject: =?iso-8859-1?q?caf=E9?= au lait", "caf\u00e9 au lait"),
    (b"Subject: =?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # white space between words drops
    (b"Subject: folded\r\n  over\r\n\tthree lines", "folded  over\tthree lines"),
    (b"Subject: =?utf-8?q?first?=\r\n =?utf-8?q?second?=", "firstsecond"),
    (b"Subject: raw 8-bit \xc3\xa9t\xc3\xa9", "raw 8-bit \u00e9t\u00e9"),
    (b"Subject: =?bogus-charset?q?abc?=", "abc"),
    (b"Subject: =?utf-8*en?q?lang?=", "lang"),
    (b"Subject: =?utf-7?q?+AGE-?=", "a"),
    (b"Subject: =?utf-8?q?broken=ZZ?=", "broken=ZZ"),
    (b"Subject:", ""),
])
def test_subjects_decode(header, expected):
    assert decode_subject(message(b"From: a@example.org", header, b"To: b@example.net")) == expected


def test_a_missing_subject_is_none():
    assert decode_subject(message(b"From: a@example.org")) is None
    assert decode_subject(b"") is None
    assert decode_subject(b"\r\nSubject: in the body\r\n") is None


def test_the_first_subject_counts_and_the_body_is_never_read():
    data = message(b"Subject: first", b"Subject: second", body=b"Subject: body\r\n")
    assert decode_subject(data) == "first"
    assert decode_subject(message(b"X-Subject: no", b"From: a")) is None


def test_a_message_without_a_body_still_has_a_subject():
    assert decode_subject(b"Subject: only headers\r\n") == "only headers"
    assert decode_subject(b"Subject: no final newline") == "no final newline"


def test_an_encoded_line_break_cannot_inject_a_header():
    # CVE-2024-6923's payload: decoded, the =0A would start a Bcc header if re-serialised.
    subject = decode_subject(message(b"Subject: =?utf-8?q?hello=0ABcc:_evil@attacker.example?="))
    assert subject == "hello\ufffdBcc: evil@attacker.example"
    assert "\n" not in subject
    assert "\r" not in subject


def test_control_characters_become_replacement_characters():
    subject = decode_subject(message(b"Subject: =?utf-8?q?a=00b=1Bc=7Fd?="))
    assert subject == "a\ufffdb\ufffdc\ufffdd"


def test_a_header_block_over_the_cap_gives_none():
    huge = b"X-Filler: " + b"x" * (HEADER_BLOCK_CAP + 10)
    assert decode_subject(message(b"Subject: hi", huge)) is None
    no_blank_line = b"Subject: hi\r\n" + b"X: y\r\n" * (HEADER_BLOCK_CAP // 6 + 10)
    assert decode_subject(no_blank_line) is None


def test_twenty_thousand_encoded_words_are_cheap_and_capped():
    words = b" ".join(b"=?utf-8?q?w=C3=A9?=" for _ in range(20_000))
    data = message(b"Subject: " + words[: HEADER_BLOCK_CAP - 100])
    started = time.process_time()
    subject = decode_subject(data)
    assert time.process_time() - started < 1.0
    assert subject is not None
    assert len(subject) <= 2000
    assert subject.startswith("w\u00e9w\u00e9")


def test_the_subject_is_capped_at_2000_characters():
    subject = decode_subject(message(b"Subject: " + b"y" * 10_000))
    assert subject == "y" * 2000


@given(st.binary(max_size=2000))
def test_any_bytes_give_a_bounded_str_or_none(data):
    subject = decode_subject(data)
    assert subject is None or (len(subject) <= 2000 and "\n" not in subject
                               and "\r" not in subject and "\x00" not in subject)


@pytest.mark.parametrize("data", [
    b"Subject: one\r\nSubject: two\r\n\r\nbody\r\n",
    b"Subject: one\r\nFrom: a@example.org\r\nSUBJECT : two\r\n\r\n",  # any case, obsolete WSP
    b"Subject: one\r\n\tfolded\r\nsubject:\r\n\r\n",  # an empty second one counts too
])
def test_given_two_subject_fields_then_the_message_is_refused_with_554_5_6_0(data):
    # Given two Subject fields in the header block, when DATA is checked, then 554 5.6.0
    # names the count and the rule: the tag would mark only the first.
    assert str(check_subject_fields(data)) == (
        "554 5.6.0 2 Subject header fields; RFC 5322 allows at most one")


@pytest.mark.parametrize("data", [
    b"Subject: one\r\nFrom: a@example.org\r\n\r\nSubject: in the body\r\n",
    b"From: a@example.org\r\n\r\n",  # none: the tagger adds one
    b"X-Subject: a\r\nSubject: b\r\nSubjects: c\r\n\r\n",
])
def test_given_at_most_one_subject_field_in_the_header_block_then_it_passes(data):
    assert check_subject_fields(data) is None


def test_given_a_header_block_over_1_mib_then_the_message_is_refused_with_554_5_6_0():
    # Given a header section whose empty line ends one octet past the tagger's 1 MiB, when DATA
    # is checked, then 554 5.6.0 says the tag could not mark it; one octet less passes.
    line = b"X-Filler: " + b"f" * 88 + b"\r\n"  # 100 octets
    head = b"Subject: s\r\n" + line * 10_000
    fits = head + b"X-Pad: " + b"p" * (1024 * 1024 - len(head) - 11) + b"\r\n\r\nbody\r\n"
    assert fits.index(b"\r\n\r\n") + 4 == 1024 * 1024  # the empty line ends at 1 MiB
    assert check_subject_fields(fits) is None
    over = fits.replace(b"X-Pad: ", b"X-Pad: p", 1)
    assert str(check_subject_fields(over)) == (
        "554 5.6.0 Header section over 1048576 octets: the subject tag could not mark it")


def test_given_a_long_header_section_then_datas_checks_leave_the_event_loop():
    # Given 256 KiB of short header lines (about 70 ms for the subject check), then DATA's
    # checks run in a thread; a message whose header section ends within 16 KiB stays inline.
    assert not inline(b"a:\r\n" * 64_000 + b"\r\nx\r\n")
    assert inline(b"Subject: s\r\n" + b"X-A: b\r\n" * 1000 + b"\r\n" + b"body\r\n" * 20_000)
    assert not inline(b"Subject: s\r\n\r\n" + b"x" * 256 * 1024)  # over 256 KiB in all
