"""Prepend the KATA subject tag to a raw message, changing only the Subject header's bytes.

Never re-serialises the message with the `email` package (CVE-2024-6923: a Subject whose
encoded words decode to a line break comes out of `policy.default` as two headers). The original
bytes of the Subject stay as they were — encoded words are never decoded and written back — and
the tag is put in front of them:

- an ASCII tag goes in as plain text (`Subject: [KATA detect] =?koi8-r?b?...?=`);
- a non-ASCII tag (or one holding `=?`) as `=?utf-8?b?...?=` encoded words; when the subject
  itself starts with an encoded word, the separating space goes *inside* the tag's last encoded
  word, because white space between two encoded words is dropped when decoding (RFC 2047 6.2).

The header block ends at the first empty line, or at the first line that is neither a header
field (`name WSP* ":"`, the obsolete white space allowed) nor a continuation line — where Python
and Postfix start the body. Only the first `HEADER_SCAN_LIMIT` bytes are looked at.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from dataclasses import dataclass

from katagate.schemas.raw_mail import HEADER_SCAN_LIMIT, TRACE_RESERVE, Header, scan_headers

MAX_LINE = 998  # RFC 5322 2.1.1, without the line ending
_EW_CHUNK = 45  # UTF-8 bytes per encoded word: 60 base64 chars, 72 with the delimiters

_ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=(?=[ \t\r\n]|$)")


@dataclass(frozen=True)
class TagResult:
    """The message after tagging: `data` is the input itself when `tagged` is False."""

    data: bytes
    tagged: bool
    note: str  # why nothing was tagged, or what was special ("" when nothing was)


def tag_subject(raw: bytes, tag: str) -> TagResult:
    """Prepend `tag` and a space to the first Subject of `raw` (see the module docstring)."""
    refusal = _check_tag(tag)
    if refusal:
        return TagResult(raw, False, refusal)
    if not raw:
        return TagResult(raw, False, "empty message: nothing to tag")
    # Ingest accepted at most HEADER_SCAN_LIMIT of the client's header, then added its trace.
    scan = scan_headers(raw, HEADER_SCAN_LIMIT + TRACE_RESERVE)
    if scan is None:
        return TagResult(
            raw, False,
            f"header block larger than {HEADER_SCAN_LIMIT + TRACE_RESERVE} bytes: not tagged")
    subjects, insert_at, eol = scan
    if not subjects:
        return _add_subject(raw, tag, insert_at, eol)
    data = _prepend(raw, subjects[0], tag)
    note = ""
    if len(subjects) > 1:
        note = f"{len(subjects)} Subject headers: tagged the first, left the others"
    return TagResult(data, True, note)


def _check_tag(tag: str) -> str:
    if not tag:
        return "empty tag: nothing to add"
    for char in tag:
        if char == "\t":
            continue
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"tag holds the control or line-break character U+{ord(char):04X}: refused"
    return ""


def _prepend(raw: bytes, subject: Header, tag: str) -> bytes:
    value_start = subject.name_end
    while value_start < subject.end and raw[value_start] in (0x20, 0x09):
        value_start += 1
    first_line_end = raw.find(b"\n", subject.name_end, subject.end)
    first_line_end = subject.end if first_line_end < 0 else first_line_end
    content_end = first_line_end
    if content_end > value_start and raw[content_end - 1] == 0x0D:
        content_end -= 1
    rest_on_first_line = value_start < content_end
    following = raw[value_start:subject.end].lstrip(b" \t\r\n")  # the unfolded value's start
    before_encoded_word = _ENCODED_WORD.match(following) is not None

    eol = raw[content_end:first_line_end + 1] or b"\r\n"
    tag_bytes = _tag_text(tag, before_encoded_word, eol)
    # The tag goes right after "Subject: "; any further blanks the value began with stay, after
    # the tag, so the original value's bytes all follow it unchanged.
    blanks = raw[subject.name_end:value_start]
    leading = b" "
    kept = blanks[1:] if blanks[:1] == b" " else blanks
    separator = b" " if rest_on_first_line else b""
    head = raw[subject.start:subject.name_end] + leading + tag_bytes
    if rest_on_first_line and len(head) + 1 + (content_end - value_start) > MAX_LINE:
        separator = eol + b" "  # fold after the tag rather than make an over-long line
    return raw[:subject.name_end] + leading + tag_bytes + separator + kept + raw[value_start:]


def _tag_text(tag: str, before_encoded_word: bool, eol: bytes) -> bytes:
    if tag.isascii() and "=?" not in tag:
        return tag.encode("ascii")
    text = tag + " " if before_encoded_word else tag
    words = [
        b"=?utf-8?b?" + base64.b64encode(chunk) + b"?="
        for chunk in _utf8_chunks(text, _EW_CHUNK)
    ]
    return (eol + b" ").join(words)


def _utf8_chunks(text: str, size: int) -> list[bytes]:
    chunks: list[bytes] = []
    current = b""
    for char in text:
        encoded = char.encode("utf-8", "surrogatepass")
        if current and len(current) + len(encoded) > size:
            chunks.append(current)
            current = b""
        current += encoded
    if current:
        chunks.append(current)
    return chunks


def _add_subject(raw: bytes, tag: str, insert_at: int, eol: bytes) -> TagResult:
    field = b"Subject: " + _tag_text(tag, False, eol) + eol
    if insert_at > 0 and raw[insert_at - 1] != 0x0A:
        # The header block runs to the end of the data without a line ending.
        return TagResult(
            raw + eol + field, True, "no Subject header: added one (after a final line ending)"
        )
    data = raw[:insert_at] + field + raw[insert_at:]
    return TagResult(data, True, "no Subject header: added one")
