"""The Subject of a message as text, read defensively from the raw bytes, pure.

Only the header block is looked at, and only up to a cap: the email package never sees a body
or an unbounded header (a Subject of 20,000 encoded words costs seconds of CPU in its
parser). Decoding uses the legacy, regex-based `decode_header` over a capped value. The result
is informational (events, consoles): control characters become U+FFFD so a decoded
`=0A` can never pass for a line break anywhere downstream (CVE-2024-6923). Any failure gives
None; the message is accepted all the same.
"""

from __future__ import annotations

import re
from email.header import decode_header

from katagate.ingest import replies
from katagate.ingest.replies import Reply
from katagate.schemas.raw_mail import HEADER_SCAN_LIMIT, header_end, subject_fields

HEADER_BLOCK_CAP = 100 * 1024  # like Postfix's header_size_limit
SUBJECT_CAP = 16 * 1024  # raw, unfolded value: about 1,000 encoded words at most
SUBJECT_CHARS = 2000  # what MessageReceived.subject holds

_FIELD = re.compile(rb"^subject[ \t]*:", re.IGNORECASE | re.MULTILINE)
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_block(data: bytes, cap: int = HEADER_BLOCK_CAP) -> bytes | None:
    """The bytes before the first empty line, or None if that is longer than the cap."""
    end = header_end(data, cap)
    if end is None:
        return None
    if end == len(data) and not data.endswith(b"\r\n"):
        return data + b"\r\n"  # the message ends inside its last header line
    return data[:end]


def raw_subject(block: bytes) -> bytes | None:
    """The first Subject field's value, unfolded, capped; None if there is none."""
    found = _FIELD.search(block)
    if found is None:
        return None
    start = found.end()
    # The field ends at the first CRLF not followed by white space (folding).
    end = start
    while True:
        end = block.find(b"\r\n", end)
        if end < 0:
            end = len(block)
            break
        if block[end + 2: end + 3] not in (b" ", b"\t"):
            break
        end += 2
    value = _FOLD.sub(b"", block[start:end])
    return value[:SUBJECT_CAP].strip(b" \t")


def _decode_part(part: bytes | str, charset: str | None) -> str:
    if isinstance(part, str):
        # No encoded words: the text is the latin-1 view of the raw bytes.
        part = part.encode("latin-1")
    if charset is None:
        return part.decode("utf-8", errors="replace")
    try:
        return part.decode(charset.split("*", 1)[0], errors="replace")
    except (LookupError, ValueError):
        return part.decode("utf-8", errors="replace")


def decode_subject(data: bytes) -> str | None:
    """The decoded Subject of raw message bytes, or None (missing, or not safely readable)."""
    try:
        block = header_block(data)
        if block is None:
            return None
        value = raw_subject(block)
        if value is None:
            return None
        # latin-1 maps each byte to one character, so decode_header hands unencoded parts back
        # as the original bytes, and raw 8-bit UTF-8 subjects survive.
        parts = decode_header(value.decode("latin-1"))
        text = "".join(_decode_part(part, charset) for part, charset in parts)
    except Exception:  # hostile input: any parser failure means "no subject"
        return None
    return _CONTROL.sub("\ufffd", text)[:SUBJECT_CHARS]


def check_subject_fields(data: bytes) -> Reply | None:
    """None when the subject tag can mark the message whole; else the 554 5.6.0 refusal.

    The tagger (decider/subject_tag.py) reads at most 1 MiB of header block and tags one
    Subject. A message with two Subject fields, or with a header block over 1 MiB, would reach
    a reader with a Subject the tag did not mark (mail clients differ on which of two Subjects
    they show): a detected message would look clean. We refuse such messages before the 250
    rather than tag every Subject: RFC 5322 section 3.6 allows at most one Subject, so no
    correct sender writes two (nor a megabyte of header), and tagging each would still leave
    the header block over 1 MiB that no bounded scan can tag. A refusal in the session bounces
    nothing (no backscatter), and the sender learns why.
    """
    count = subject_fields(data)
    if count is None:
        return replies.HEADERS_TOO_LARGE.with_text(
            f"Header section over {HEADER_SCAN_LIMIT} octets: the subject tag could not mark it")
    if count > 1:
        return replies.SUBJECT_FIELDS.with_text(
            f"{count} Subject header fields; RFC 5322 allows at most one")
    return None
