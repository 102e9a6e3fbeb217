"""Prepending the KATA subject tag changes the Subject's bytes and nothing else."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katagate.decider.subject_tag import HEADER_SCAN_LIMIT, tag_subject
from katagate.schemas.raw_mail import TRACE_RESERVE

TAG = "[KATA detect]"
BODY = b"line one\r\n.line starting with a dot\r\nSubject: not a header, in the body\r\n"


def _parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.default)


def _only_subject_changed(before: bytes, after: bytes, old: bytes, new: bytes) -> None:
    """`after` is `before` with the one Subject field `old` replaced by `new`."""
    assert before.count(old) == 1
    assert after == before.replace(old, new)


def test_given_a_plain_subject_then_the_tag_and_a_space_go_in_front():
    raw = b"From: a@example.org\r\nSubject: Invoice 42\r\nTo: b@example.net\r\n\r\n" + BODY
    result = tag_subject(raw, TAG)
    assert result.tagged
    assert result.note == ""
    _only_subject_changed(raw, result.data, b"Subject: Invoice 42\r\n",
                          b"Subject: [KATA detect] Invoice 42\r\n")
    assert _parse(result.data)["subject"] == "[KATA detect] Invoice 42"


@pytest.mark.parametrize(("field", "decoded"), [
    (b"=?utf-8?q?Rechnung_f=C3=BCr_M=C3=A4rz?=", "Rechnung für März"),
    (b"=?koi8-r?b?8NLJ18XU?=", "Привет"),
    (b"=?ISO-2022-JP?B?GyRCJEskUyQkJEgkMxsoQg==?=", "にびいとこ"),
    (b"=?windows-1251?Q?=CF=F0=E8=E2=E5=F2?= and text", "Привет and text"),
])
def test_given_encoded_words_then_they_are_kept_as_they_are_after_an_ascii_tag(field, decoded):
    raw = b"From: a@example.org\r\nSubject: " + field + b"\r\n\r\n" + BODY
    result = tag_subject(raw, TAG)
    assert result.tagged
    _only_subject_changed(raw, result.data, b"Subject: " + field,
                          b"Subject: [KATA detect] " + field)
    assert _parse(result.data)["subject"] == f"[KATA detect] {decoded}"


@pytest.mark.parametrize(("field", "decoded"), [
    (b"=?utf-8?q?h=C3=A9llo?=", "héllo"),
    (b"plain words", "plain words"),
    (b"", ""),
])
def test_given_a_non_ascii_tag_then_it_goes_in_as_its_own_encoded_word(field, decoded):
    tag = "[KATA обнаружено]"
    raw = b"Subject: " + field + b"\r\nFrom: a@example.org\r\n\r\n" + BODY
    result = tag_subject(raw, tag)
    assert result.tagged
    subject_line = result.data.split(b"\r\n", 1)[0]
    assert subject_line.isascii()
    assert subject_line.startswith(b"Subject: =?utf-8?b?")
    assert result.data.endswith(b"\r\nFrom: a@example.org\r\n\r\n" + BODY)
    assert _parse(result.data)["subject"] == (f"{tag} {decoded}" if decoded else tag)


def test_given_a_long_non_ascii_tag_then_its_encoded_words_are_folded_and_short():
    tag = "Ω" * 200
    raw = b"Subject: x\r\n\r\nbody\r\n"
    result = tag_subject(raw, tag)
    header = result.data.split(b"\r\n\r\n", 1)[0]
    lines = header.split(b"\r\n")
    assert len(lines) > 1
    assert all(len(line) <= 998 for line in lines)
    words = [w for line in lines for w in line.split() if w.startswith(b"=?")]
    assert words
    assert all(len(w) <= 75 for w in words)
    assert _parse(result.data)["subject"] == tag + " x"


def test_given_a_folded_subject_then_continuation_lines_keep_their_bytes():
    field = b"Subject:\r\n =?utf-8?q?first_half?=\r\n\t=?utf-8?q?_second_half?=\r\n"
    raw = b"From: a@example.org\r\n" + field + b"To: b@example.net\r\n\r\n" + BODY
    result = tag_subject(raw, TAG)
    assert result.tagged
    _only_subject_changed(raw, result.data, field, b"Subject: [KATA detect]" + field[8:])
    assert _parse(result.data)["subject"] == "[KATA detect] first half second half"


def test_given_no_subject_then_one_is_added_at_the_end_of_the_header_block():
    raw = b"From: a@example.org\r\nTo: b@example.net\r\n\r\n" + BODY
    result = tag_subject(raw, TAG)
    assert result.tagged
    assert "no Subject" in result.note
    assert result.data == (
        b"From: a@example.org\r\nTo: b@example.net\r\nSubject: [KATA detect]\r\n\r\n" + BODY)


def test_given_several_subjects_then_the_first_is_tagged_and_it_is_reported():
    raw = b"SUBJECT: one\r\nsubject: two\r\nSubJect: three\r\n\r\n" + BODY
    result = tag_subject(raw, TAG)
    assert result.tagged
    assert "3 Subject headers" in result.note
    assert result.data == raw.replace(b"SUBJECT: one", b"SUBJECT: [KATA detect] one")


def test_given_the_cve_2024_6923_subject_then_it_stays_one_header_never_decoded():
    hostile = b"Subject: =?utf-8?q?hello=0ABcc:_evil@attacker.example?=\r\n"
    raw = b"From: a@example.org\r\n" + hostile + b"To: b@example.net\r\n\r\n" + BODY
    result = tag_subject(raw, TAG)
    assert result.tagged
    assert result.data == raw.replace(hostile, hostile.replace(b": ", b": [KATA detect] "))
    header_block = result.data.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc") for line in header_block.split(b"\r\n"))
    compat = email.message_from_bytes(result.data, policy=email.policy.compat32)
    assert compat.get_all("Bcc") is None
    assert len(compat.get_all("Subject") or []) == 1


def test_given_lf_only_line_endings_then_they_are_kept_and_used():
    raw = b"From: a@example.org\nTo: b@example.net\n\nbody\n"
    result = tag_subject(raw, TAG)
    assert result.data == (
        b"From: a@example.org\nTo: b@example.net\nSubject: [KATA detect]\n\nbody\n")
    tagged = tag_subject(b"Subject: x\nFrom: a@b\n\nbody\n", TAG)
    assert tagged.data == b"Subject: [KATA detect] x\nFrom: a@b\n\nbody\n"


def test_given_no_body_separator_then_the_header_block_ends_with_the_data():
    assert tag_subject(b"From: a@b\r\nSubject: x\r\n", TAG).data == (
        b"From: a@b\r\nSubject: [KATA detect] x\r\n")
    assert tag_subject(b"From: a@b\r\n", TAG).data == b"From: a@b\r\nSubject: [KATA detect]\r\n"
    unterminated = tag_subject(b"From: a@b", TAG)
    assert unterminated.data == b"From: a@b\r\nSubject: [KATA detect]\r\n"
    assert "final line ending" in unterminated.note


def test_given_a_line_that_is_not_a_header_then_the_body_starts_there():
    raw = b"From: a@b\r\nthis is body text\r\nSubject: in the body\r\n"
    result = tag_subject(raw, TAG)
    assert result.data == (
        b"From: a@b\r\nSubject: [KATA detect]\r\nthis is body text\r\nSubject: in the body\r\n")


def test_given_8bit_bytes_in_headers_then_they_pass_through_untouched():
    raw = "From: Jörg <j@example.org>\r\nSubject: Grüße\r\n\r\nbody\r\n".encode()
    raw += b"\xff\xfe raw\r\n"
    result = tag_subject(raw, TAG)
    assert result.data == raw.replace("Subject: Grüße".encode(),
                                      "Subject: [KATA detect] Grüße".encode())


def test_given_an_mbox_from_line_then_it_is_skipped_not_taken_for_the_body():
    raw = b"From sender@example.org Mon Jan  1 00:00:00 2024\r\nSubject: x\r\n\r\nb\r\n"
    assert tag_subject(raw, TAG).data == raw.replace(b"Subject: x", b"Subject: [KATA detect] x")


def test_given_the_largest_header_ingest_accepts_and_its_received_field_then_it_is_tagged():
    # Given a client header section of HEADER_SCAN_LIMIT octets (empty line included), and
    # ingest's trace field in front of it, as large as it can be
    filler = HEADER_SCAN_LIMIT - len(b"Subject: x\r\nX-Filler: \r\n\r\n")
    client = b"Subject: x\r\nX-Filler: " + b"a" * filler + b"\r\n\r\nbody"
    trace = b"Received: " + b"b" * (TRACE_RESERVE - len(b"Received: \r\n")) + b"\r\n"
    # When it is tagged, then the Subject is marked
    result = tag_subject(trace + client, TAG)
    assert result.tagged
    assert result.data.startswith(trace + b"Subject: " + TAG.encode() + b" x\r\n")


def test_given_a_header_block_beyond_the_cap_then_nothing_is_tagged_and_why_is_said():
    raw = (b"Subject: x\r\n" + b"X-Filler: " + b"a" * (HEADER_SCAN_LIMIT + TRACE_RESERVE)
           + b"\r\n\r\nbody")
    result = tag_subject(raw, TAG)
    assert not result.tagged
    assert result.data is raw
    assert "larger than" in result.note


@pytest.mark.parametrize("tag", ["", "a\r\nBcc: evil@example.org", "x\ny", "x\x00", "x\u2028y"])
def test_given_an_unsafe_or_empty_tag_then_nothing_changes(tag):
    raw = b"Subject: x\r\n\r\nbody"
    result = tag_subject(raw, tag)
    assert not result.tagged
    assert result.data == raw
    assert result.note


def test_given_a_subject_line_near_the_limit_then_the_tag_folds_instead_of_overflowing():
    raw = b"Subject: " + b"w" * 985 + b"\r\n\r\nbody"
    result = tag_subject(raw, TAG)
    assert all(len(line) <= 998 for line in result.data.split(b"\r\n"))
    assert _parse(result.data)["subject"] == "[KATA detect] " + "w" * 985


def test_given_an_ascii_tag_that_looks_like_an_encoded_word_then_it_is_encoded():
    result = tag_subject(b"Subject: x\r\n\r\nb", "=?utf-8?q?trick?=")
    assert _parse(result.data)["subject"] == "=?utf-8?q?trick?= x"


_header_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    before=st.lists(st.tuples(st.sampled_from(["From", "To", "X-A", "Received"]), _header_text),
                    max_size=5),
    subject=_header_text,
    after=st.lists(st.tuples(st.sampled_from(["Cc", "X-B"]), _header_text), max_size=5),
    body=st.binary(max_size=200),
    tag=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl",
                                                                          "Zp"]),
                 min_size=1, max_size=30),
)
def test_property_only_the_subject_line_changes(before, subject, after, body, tag):
    def fields(items):
        return b"".join(f"{name}: {value}\r\n".encode() for name, value in items)

    head, tail = fields(before), fields(after) + b"\r\n" + body
    subject_line = f"Subject: {subject}\r\n".encode()
    result = tag_subject(head + subject_line + tail, tag)
    assert result.tagged
    assert result.data.startswith(head)
    assert result.data.endswith(tail)
    new_subject = result.data[len(head):len(result.data) - len(tail)]
    assert new_subject.lower().startswith(b"subject: ")
    assert new_subject.endswith(subject_line[9:])
