"""DATA checks, pure: size, bare CR / bare LF / NUL, text line length.

Our choice for bare CR, bare LF and NUL is to refuse the message (550 5.6.11), never to repair
it: aiosmtpd keeps such bytes inside the content, and a next hop that reads a bare LF or CR as a
line end could see a message boundary the sender did not write (SMTP smuggling). A sender that
speaks SMTP correctly never sends them (RFC 5321 section 2.3.8), so refusing costs nothing and
keeps the raw bytes we store equal to the bytes we were sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest import replies
from ingest.replies import Reply

# The first offending byte: a CR not followed by LF, an LF not preceded by CR, or NUL.
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n|\x00")
_NAMES = {b"\r": "bare CR", b"\n": "bare LF", b"\x00": "NUL"}


@dataclass(frozen=True)
class ContentLimits:
    max_bytes: int = 36 * 1024 * 1024
    max_line: int = 1000  # octets including CRLF, RFC 5321 section 4.5.3.1.6


def _line_number(data: bytes, position: int) -> int:
    return data.count(b"\n", 0, position) + 1


def check_content(data: bytes, limits: ContentLimits) -> Reply | None:
    """None if the (dot-unstuffed) DATA may be accepted; else the refusal, naming what and
    where. Checks run in order of severity: size, then forbidden bytes, then line length."""
    if len(data) > limits.max_bytes:
        return replies.TOO_LARGE.with_text(
            f"Message size exceeds fixed maximum message size ({limits.max_bytes} octets)")
    bare = _BARE.search(data)
    if bare is not None:
        what = _NAMES[bare.group()]
        position = bare.start()
        return replies.BARE_NEWLINE.with_text(
            f"{what} not allowed: line {_line_number(data, position)}, octet {position + 1}")
    # Lines are CRLF-terminated from here on; anchored at line starts, the scan is linear.
    long_line = re.compile(rb"^[^\r\n]{%d}" % (limits.max_line - 1), re.MULTILINE)
    found = long_line.search(data)
    if found is not None:
        start = found.start()
        end = data.find(b"\r\n", start)
        length = (end if end >= 0 else len(data)) - start + 2
        return replies.LINE_TOO_LONG.with_text(
            f"Line too long: line {_line_number(data, start)} is {length} octets with CRLF, "
            f"limit {limits.max_line}")
    return None
