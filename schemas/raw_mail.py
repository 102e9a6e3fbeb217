"""Where the header section of a raw message ends, and its Subject fields as the subject tag
sees them; pure, shared by ingest and the decider.

Stored messages are CRLF only (ingest refuses a bare CR or LF), so the header section ends at the
first empty line: the first CRLF CRLF, or a CRLF at the very start (no header at all). A message
without an empty line is all header (RFC 5322 section 3.5: the body is optional). Only a bounded
prefix is read, so a hostile message costs at most `limit` bytes of searching.

`scan_headers` reads the header block as the subject tag does (the block also ends at the first
line that is neither a header field nor a continuation, where Python and Postfix start the
body); ingest counts Subject fields with it, so what ingest accepts the tagger can tag whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER_SCAN_LIMIT = 1 << 20  # bytes of header block ingest accepts from a client
# At most what ingest's own Received field adds in front (ingest/trace.py): the subject tag
# scans this much more, so whatever ingest accepted it can still tag whole.
TRACE_RESERVE = 4096

_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")


def header_end(data: bytes, limit: int) -> int | None:
    """The length of the header section: `data[:end]` is every header line with its CRLF,
    `data[end:]` the empty line and the body (or nothing). None when the header section is
    longer than `limit` bytes; only `data[:limit + 2]` is read."""
    if limit < 0:
        raise ValueError(f"limit must be 0 or more: {limit}")
    if data.startswith(b"\r\n"):
        return 0
    # Within the first limit + 2 bytes, a CRLF CRLF leaves at most `limit` bytes before its
    # second CRLF: a header section that fits.
    end = data.find(b"\r\n\r\n", 0, limit + 2)
    if end >= 0:
        return end + 2
    return len(data) if len(data) <= limit else None


@dataclass(frozen=True)
class Header:
    start: int  # offset of the field's first line
    name_end: int  # offset just after the colon
    end: int  # offset after the field's last line (continuations included)


def scan_headers(raw: bytes, scan_limit: int = HEADER_SCAN_LIMIT, name: bytes = b"subject"
                 ) -> tuple[list[Header], int, bytes] | None:
    """The fields named `name` (lower case; Subject unless told), where a new field would go,
    and the line ending to use.

    None when the header block does not end within `scan_limit` bytes.
    """
    subjects: list[Header] = []
    current: Header | None = None
    eol = b"\r\n"
    eol_known = False
    pos = 0
    limit = min(len(raw), scan_limit)
    while pos < len(raw):
        if pos >= limit:
            return None
        newline = raw.find(b"\n", pos, limit)
        if newline < 0:
            if len(raw) > limit:
                return None
            line_end = content_end = len(raw)  # the last line has no line ending
        else:
            line_end = newline + 1
            content_end = newline - 1 if newline > pos and raw[newline - 1] == 0x0D else newline
            if not eol_known:
                eol, eol_known = raw[content_end:line_end], True
        if content_end == pos:  # the empty line: the body follows
            break
        first = raw[pos]
        if first in (0x20, 0x09):  # a continuation line (even a stray first one)
            if current is not None:
                current = Header(current.start, current.name_end, line_end)
                subjects[-1] = current
        else:
            current = None
            field = _FIELD.match(raw, pos, content_end)
            if field is None:
                if pos == 0 and raw.startswith(b"From "):  # an mbox From_ line
                    pos = line_end
                    continue
                break  # not a header: the body starts here, without an empty line
            if field.group(1).lower() == name:
                current = Header(pos, field.end(), line_end)
                subjects.append(current)
        pos = line_end
    return subjects, pos, eol


def subject_fields(raw: bytes) -> int | None:
    """How many Subject fields the subject tag (decider/subject_tag.py) finds in `raw`'s
    header block; None when the block does not end within `HEADER_SCAN_LIMIT` bytes, so the
    message could not be tagged. Ingest refuses a message unless this is 0 or 1
    (ingest/subject.py): it reads the header block as the tagger does, so whatever ingest
    accepts, the tagger tags whole."""
    scan = scan_headers(raw)
    return None if scan is None else len(scan[0])
