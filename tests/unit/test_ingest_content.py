"""DATA checks: bare CR, bare LF and NUL refused (never repaired), line length, size."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katagate.ingest import content
from katagate.ingest.content import ContentLimits, check_content

LIMITS = ContentLimits(max_bytes=10_000, max_line=1000)
HEAD = b"Subject: x\r\n\r\n"


def check(data: bytes) -> str | None:
    refusal = check_content(data, LIMITS)
    return None if refusal is None else str(refusal)


def test_a_clean_message_passes():
    assert check(HEAD + b"hello\r\nworld\r\n") is None


@pytest.mark.parametrize(("data", "what", "line"), [
    (HEAD + b"one\rtwo\r\n", "bare CR", 3),
    (HEAD + b"one\ntwo\r\n", "bare LF", 3),
    (HEAD + b"one\x00two\r\n", "NUL", 3),
    (b"Subject: x\n\r\n", "bare LF", 1),
    (HEAD + b"a\r\n.\r\r\n", "bare CR", 4),
    (HEAD + b"end\r\r\n", "bare CR", 3),
])
def test_bare_cr_bare_lf_and_nul_are_refused_naming_which_and_where(data, what, line):
    refused = check(data)
    assert refused is not None
    assert refused.startswith(f"550 5.6.11 {what} not allowed: line {line}, octet ")


@pytest.mark.parametrize(("content", "ok"), [(998, True), (999, False), (1000, False),
                                             (1001, False)])
def test_text_lines_of_998_octets_plus_crlf_pass_and_longer_ones_get_500(content, ok):
    refused = check(HEAD + b"x" * content + b"\r\nshort\r\n")
    if ok:
        assert refused is None
    else:
        assert refused is not None
        assert refused.startswith(
            f"500 5.5.2 Line too long: line 3 is {content + 2} octets with CRLF, limit 1000")


def test_a_raised_line_limit_is_honoured():
    assert check_content(b"x" * 1500 + b"\r\n", ContentLimits(10_000, 2000)) is None


def test_size_at_the_limit_passes_and_one_octet_more_is_552():
    body = b"x" * 98 + b"\r\n"
    data = (body * 100)[: LIMITS.max_bytes]
    data = data[:-2] + b"\r\n"
    assert len(data) == LIMITS.max_bytes
    assert check(data) is None
    refused = check(data + b"\r\n")
    assert refused is not None
    assert refused.startswith("552 5.3.4 Message size exceeds fixed maximum message size")


def test_size_is_checked_before_content():
    assert str(check(b"\x00" * 20_000)).startswith("552 5.3.4")


def test_a_long_message_of_many_short_lines_is_scanned_quickly():
    data = b"ab\r\n" * 2_000_000
    assert check_content(data, ContentLimits(max_bytes=len(data))) is None


@given(st.binary(max_size=3000))
def test_anything_accepted_is_crlf_lines_of_at_most_1000_octets_without_nul(data):
    if check(data) is None:
        assert b"\x00" not in data
        assert data.replace(b"\r\n", b"").count(b"\r") == 0
        assert data.replace(b"\r\n", b"").count(b"\n") == 0
        assert all(len(line) + 2 <= 1000 for line in data.split(b"\r\n"))


@given(st.lists(st.binary(max_size=50).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
                                             .replace(b"\x00", b"")), max_size=30),
       st.sampled_from([b"\r", b"\n", b"\x00"]), st.data())
def test_one_forbidden_byte_anywhere_in_clean_lines_is_refused(lines, byte, data):
    clean = b"".join(line + b"\r\n" for line in lines) or b"\r\n"
    at = data.draw(st.integers(0, len(clean)))
    dirty = clean[:at] + byte + clean[at:]
    if byte == b"\r" and dirty[at + 1: at + 2] == b"\n" and (at == 0 or dirty[at - 1] != 13):
        return  # that made a CRLF, not a bare CR; and a bare LF may have turned into CRLF
    if byte == b"\n" and at > 0 and dirty[at - 1] == 13:
        return
    refused = check(dirty)
    assert refused is not None
    assert refused.startswith("550 5.6.11")


# The fast paths (counts for bare bytes, splitting for line length) against the plain regexes
# they replaced: the same verdict and the same position, on both sides of the split threshold.
_REFERENCE_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n|\x00")


def reference_check(data: bytes, limits: ContentLimits) -> str | None:
    if len(data) > limits.max_bytes:
        return "size"
    bare = _REFERENCE_BARE.search(data)
    if bare is not None:
        return f"bare {bare.group()!r} at {bare.start()}"
    found = re.compile(rb"^[^\r\n]{%d}" % (limits.max_line - 1), re.MULTILINE).search(data)
    return None if found is None else f"long at {found.start()}"


def fast_check(data: bytes, limits: ContentLimits) -> str | None:
    if len(data) > limits.max_bytes:
        return "size"
    bare = content._find_bare(data)
    if bare is not None:
        return f"bare {bare.group()!r} at {bare.start()}"
    start = content._long_line_start(data, limits.max_line - 1)
    return None if start is None else f"long at {start}"


lines_of = st.lists(st.sampled_from([b"a", b"bb", b"c" * 7, b"\r\n", b"\r", b"\n", b"\x00",
                                     b"\r\r\n", b"\n\r"]), max_size=60).map(b"".join)


@given(lines_of, st.integers(2, 12), st.booleans())
def test_the_fast_checks_agree_with_the_plain_regexes(data, max_line, past_split):
    limits = ContentLimits(max_bytes=10_000, max_line=max_line)
    threshold = 0 if past_split else content.SPLIT_LINES_BYTES
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(content, "SPLIT_LINES_BYTES", threshold)
        assert fast_check(data, limits) == reference_check(data, limits)


def test_a_long_line_deep_in_a_large_message_is_found_by_the_regex_path():
    data = b"x\r\n" * 100_000 + b"y" * 1200 + b"\r\n"
    assert len(data) > content.SPLIT_LINES_BYTES
    refused = check_content(data, ContentLimits(max_bytes=len(data)))
    assert str(refused).startswith("500 5.5.2 Line too long: line 100001 is 1202 octets")
