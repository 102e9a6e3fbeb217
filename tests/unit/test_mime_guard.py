"""A bounded look at a message: ordinary mail is read right, hostile mail is named, quickly."""

from __future__ import annotations

import email
import email.policy
import time
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decider.mime_guard import Inspection, Limits, inspect

BOUND_S = 2.0


def _timed(raw: bytes, limits: Limits = Limits()) -> Inspection:  # noqa: B008
    began = time.process_time()
    result = inspect(raw, limits)
    elapsed = time.process_time() - began
    assert elapsed < BOUND_S, f"took {elapsed:.2f} s"
    return result


def _nested_multipart(depth: int) -> bytes:
    head, tail = b"", b""
    for level in range(depth):
        boundary = b"level-%06d" % level
        head += (b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--'
                 + boundary + b"\r\n")
        tail = b"\r\n--" + boundary + b"--\r\n" + tail
    return b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nleaf\r\n" + tail


def _flat(parts: int) -> bytes:
    body = b"".join(b"--flat\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i
                    for i in range(parts))
    return (b"Subject: flat\r\nContent-Type: multipart/mixed; boundary=flat\r\n\r\n" + body
            + b"--flat--\r\n")


# -- ordinary mail ------------------------------------------------------------------------------


def test_given_an_ordinary_message_then_its_shape_matches_the_email_package():
    message = EmailMessage()
    message["From"] = "a@example.org"
    message["To"] = "b@example.net"
    message["Subject"] = "Quarterly report — März"
    message.set_content("Hello\n")
    message.add_alternative("<p>Hello</p>", subtype="html")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf",
                           filename="report Q1.pdf")
    message.add_attachment("Grüße".encode(), maintype="text", subtype="plain",
                           filename="grüße.txt")
    raw = message.as_bytes(policy=email.policy.SMTP)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)

    result = _timed(raw)

    assert result.problems == []
    assert result.complete
    assert result.subject == "Quarterly report — März"
    assert result.part_count == len(list(parsed.walk()))
    assert result.attachment_names == [p.get_filename() for p in parsed.walk()
                                       if p.get_filename()]
    assert result.max_depth == 2
    assert result.header_count == len(parsed.keys())


def test_given_a_forwarded_message_then_its_parts_count_and_depth_include_the_inner_one():
    inner = b"Subject: inner\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    raw = (b"Subject: fwd\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
           b"Content-Type: text/plain\r\n\r\nsee below\r\n--o\r\n"
           b"Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=fwd.eml"
           b"\r\n\r\n" + inner + b"--o--\r\n")
    result = _timed(raw)
    assert (result.part_count, result.max_depth) == (4, 2)
    assert result.attachment_names == ["fwd.eml"]
    assert result.subject == "fwd"


@pytest.mark.parametrize(("header", "name"), [
    (b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.pdf", "€ rates.pdf"),
    (b"Content-Disposition: attachment;\r\n filename*0*=utf-8''%E2%82%AC;\r\n"
     b" filename*1=\" part two.pdf\"", "€ part two.pdf"),
    (b'Content-Type: application/pdf; name="=?utf-8?b?0L/QsNC/0LrQsC5wZGY=?="', "папка.pdf"),
    (b'Content-Disposition: attachment; filename="quoted \\"name\\".txt"', 'quoted "name".txt'),
])
def test_given_encoded_file_names_then_they_are_decoded(header, name):
    raw = (b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n" + header
           + b"\r\n\r\ndata\r\n--q--\r\n")
    assert _timed(raw).attachment_names == [name]


# -- the hostile corpus (notes/hostile-input.md) ------------------------------------------------


def test_given_multipart_nested_1000_deep_then_the_depth_limit_is_named():
    result = _timed(_nested_multipart(1000))
    assert "MIME nesting deeper than 100" in result.problems
    assert result.max_depth == 101
    assert result.part_count == 101


def test_given_message_rfc822_nested_1000_deep_then_the_depth_limit_is_named():
    raw = b"Subject: top\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 1000 + b"leaf\r\n"
    result = _timed(raw)
    assert "MIME nesting deeper than 100" in result.problems
    assert result.subject == "top"


def test_given_nesting_at_the_limit_then_no_problem_and_one_more_level_is_named():
    at_limit = _timed(_nested_multipart(100))  # the leaf sits at depth 100
    assert at_limit.problems == []
    assert at_limit.max_depth == 100
    beyond = _timed(_nested_multipart(101))
    assert beyond.problems == ["MIME nesting deeper than 100"]


def test_given_100k_flat_parts_then_the_part_limit_is_named_and_the_scan_stops():
    result = _timed(_flat(100_000))
    assert "more than 10000 MIME parts" in result.problems
    assert result.part_count == 10_000
    assert not result.complete


def test_given_a_subject_of_20k_encoded_words_then_only_100_are_decoded():
    raw = (b"Subject: " + b" ".join(b"=?utf-8?q?w%d?=" % i for i in range(20_000))
           + b"\r\n\r\nbody\r\n")
    result = _timed(raw)
    assert any("more than 100 encoded words" in p for p in result.problems)
    assert result.subject is not None
    assert result.subject.startswith("w0w1w2")


def test_given_a_missing_closing_boundary_then_it_is_named():
    raw = (b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain"
           b"\r\n\r\npart\r\n")
    result = _timed(raw)
    assert "missing closing boundary" in result.problems
    assert result.part_count == 2


@pytest.mark.parametrize(("outer", "inner"), [(b"abc", b"abcdef"), (b"abcdef", b"abc")])
def test_given_a_boundary_that_prefixes_another_then_it_is_named(outer, inner):
    raw = (b"Content-Type: multipart/mixed; boundary=" + outer + b"\r\n\r\n--" + outer
           + b"\r\nContent-Type: multipart/alternative; boundary=" + inner + b"\r\n\r\n--"
           + inner + b"\r\n\r\nx\r\n--" + inner + b"--\r\n--" + outer + b"--\r\n")
    result = _timed(raw)
    assert any("prefix of another" in p for p in result.problems)
    assert result.part_count == 3


def test_given_a_line_that_only_starts_with_the_boundary_then_it_is_named():
    raw = (b"Content-Type: multipart/mixed; boundary=abc\r\n\r\n--abc\r\n\r\nx\r\n--abcdef\r\n"
           b"--abc--\r\n")
    assert any("starts with a boundary" in p for p in _timed(raw).problems)


def test_given_duplicate_content_type_then_it_is_named_and_the_first_is_used():
    raw = (b"Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n"
           b"--z\r\n\r\nx\r\n--z--\r\n")
    result = _timed(raw)
    assert "duplicate Content-Type header" in result.problems
    assert result.part_count == 1


def test_given_conflicting_transfer_encodings_then_they_are_named():
    raw = b"Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\nx"
    assert "conflicting Content-Transfer-Encoding headers" in _timed(raw).problems


def test_given_100k_headers_then_the_header_limit_is_named():
    raw = b"".join(b"X-H%d: v\r\n" % i for i in range(100_000)) + b"\r\nbody\r\n"
    assert "more than 1000 header fields" in _timed(raw).problems


def test_given_a_1mb_header_then_the_field_limit_is_named():
    raw = b"Subject: hi\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\nbody\r\n"
    result = _timed(raw)
    assert "header field larger than 102400 bytes" in result.problems
    assert result.subject == "hi"


def test_given_a_1mb_folded_header_then_the_field_limit_is_named():
    raw = b"Subject: hi\r\nX-Big: a\r\n" + b" folded line\r\n" * 75_000 + b"\r\nbody\r\n"
    assert "header field larger than 102400 bytes" in _timed(raw).problems


def test_given_a_header_block_that_never_ends_then_the_block_limit_is_named():
    result = _timed(b"X-A: " + b"a" * 3_000_000)
    assert "header block larger than 1048576 bytes" in result.problems
    assert not result.complete


def test_given_20k_addresses_in_to_then_it_returns_in_time():
    raw = (b"To: " + b", ".join(b"user%d@example.org" % i for i in range(20_000))
           + b"\r\nSubject: many\r\n\r\nbody\r\n")
    result = _timed(raw)
    assert result.subject == "many"
    assert "header field larger than 102400 bytes" in result.problems


def test_given_millions_of_boundary_like_lines_then_the_work_limit_is_named():
    raw = (b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\n" + b"--x\r\n" * 2_000_000
           + b"--q--\r\n")
    result = _timed(raw)
    assert any("work limit" in p for p in result.problems)
    assert not result.complete


@pytest.mark.parametrize(("subject", "problem"), [
    (b"=?utf-7?B?K0FEd0Fjd0JqQUhJQWFRQndBSFFBUGctOA==?=", "refused charset 'utf-7'"),
    (b"=?x-no-such-charset?q?abc?=", "charset 'x-no-such-charset'"),
    (b"=?rot13?q?abc?=", "charset 'rot13'"),
    (b"=?utf-8?q?hello=0ABcc:_evil@attacker.example?=", "control or line-break"),
])
def test_given_hostile_subject_charsets_then_they_are_not_decoded_or_shown_raw(subject, problem):
    result = _timed(b"Subject: " + subject + b"\r\n\r\nbody\r\n")
    assert any(problem in p for p in result.problems), result.problems
    assert result.subject is not None
    assert "\n" not in result.subject


def test_given_an_over_long_file_name_then_it_is_cut_and_named():
    raw = (b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Disposition: "
           b"attachment; filename=" + b"n" * 5000 + b".exe\r\n\r\nx\r\n--q--\r\n")
    result = _timed(raw)
    assert len(result.attachment_names[0]) == 256
    assert "attachment name longer than 255 characters" in result.problems


def test_given_thousands_of_names_in_unknown_charsets_then_it_returns_in_time():
    def words(n: int) -> bytes:  # a failed charset lookup costs ~40 us: 20,000 of them
        return b" ".join(b"=?x-unknown-%d-%d?q?a?=" % (n, i) for i in range(20))

    parts = b"".join(b"--q\r\nContent-Type: application/octet-stream; name=\"" + words(n)
                     + b"\"\r\n\r\nx\r\n" for n in range(1000))
    raw = b"Content-Type: multipart/mixed; boundary=q\r\n\r\n" + parts + b"--q--\r\n"
    result = _timed(raw)
    assert len(result.attachment_names) == 1000
    assert len(result.problems) <= 51
    assert result.problems[-1] == "more problems than listed"


def test_given_a_long_body_line_right_after_a_delimiter_then_it_is_body_not_headers():
    raw = (b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n" + b"A" * 3_000_000
           + b"\r\n--q--\r\n")
    result = _timed(raw)
    assert result.problems == []
    assert result.part_count == 2


def test_given_tighter_limits_then_they_are_the_ones_applied():
    result = _timed(_nested_multipart(5), Limits(max_depth=3, max_parts=100))
    assert "MIME nesting deeper than 3" in result.problems


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_property_never_raises_on_arbitrary_bytes(raw):
    result = inspect(raw)
    assert result.part_count >= 1


_fragments = st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=a\r\n", b"Content-Type: message/rfc822\r\n",
    b"--a\r\n", b"--a--\r\n", b"\r\n", b"Subject: =?utf-8?b?w6k=?=\r\n", b" folded\r\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%C3; filename*1*=%A9\r\n",
    b"Content-Type: multipart/digest; boundary=\"a-b\"\r\n", b"--a-b\r\n", b"text\r\n",
    b"X: \xff\r\n", b"--", b"\n", b"\r",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_fragments, max_size=60))
def test_property_never_raises_on_mime_shaped_garbage(fragments):
    result = inspect(b"".join(fragments))
    assert result.max_depth <= 101


_trees = st.recursive(
    st.tuples(st.just("leaf"), st.one_of(st.none(), st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"],
                               exclude_characters='"\\'), min_size=1, max_size=20).filter(
            lambda name: name.strip() == name))),
    lambda children: st.tuples(st.sampled_from(["mixed", "alternative", "rfc822"]),
                               st.lists(children, min_size=1, max_size=4)),
    max_leaves=12,
)


def _build(tree: tuple) -> EmailMessage:  # type: ignore[type-arg]
    kind, content = tree
    part = EmailMessage()
    if kind == "leaf":
        if content is None:
            part.set_content("text\n")
        else:
            part.set_content(b"data", maintype="application", subtype="octet-stream",
                             filename=content)
        return part
    if kind == "rfc822":
        inner = _build(("mixed", content))
        inner["Subject"] = "inner"
        part.set_content(inner)
        return part
    part.make_mixed() if kind == "mixed" else part.make_alternative()
    for child in content:
        part.attach(_build(child))
    return part


@settings(max_examples=150, deadline=None)
@given(_trees)
def test_property_well_formed_mail_reads_like_the_email_package(tree):
    message = _build(tree)
    message["Subject"] = "generated"
    raw = message.as_bytes(policy=email.policy.SMTP)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    result = inspect(raw)
    assert result.problems == []
    assert result.part_count == len(list(parsed.walk()))
    assert result.attachment_names == [p.get_filename() for p in parsed.walk()
                                       if p.get_filename()]
