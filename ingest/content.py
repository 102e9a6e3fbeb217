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

from katagate.ingest import replies
from katagate.ingest.replies import Reply

# The first offending byte: a CR not followed by LF, an LF not preceded by CR, or NUL.
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n|\x00")
_NAMES = {b"\r": "bare CR", b"\n": "bare LF", b"\x00": "NUL"}


@dataclass(frozen=True)
class ContentLimits:
    max_bytes: int = 36 * 1024 * 1024
    max_line: int = 1000  # octets including CRLF, RFC 5321 section 4.5.3.1.6


def _line_number(data: bytes, position: int) -> int:
    return data.count(b"\n", 0, position) + 1


def _find_bare(data: bytes) -> re.Match[bytes] | None:
    # Counting runs at memory speed, the regex (a lookbehind at every LF) 12 times slower:
    # when every CR and every LF belongs to a CRLF pair the counts agree and nothing is bare.
    if b"\x00" not in data and data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n"):
        return None
    return _BARE.search(data)


# Splitting into lines is 4 times faster than the anchored regex but holds every line at once:
# only for messages small enough to be inspected on the event loop.
SPLIT_LINES_BYTES = 256 * 1024


def _long_line_start(data: bytes, chars: int) -> int | None:
    """The offset of the first line of at least `chars` octets before its CRLF, or None.
    Lines are CRLF-terminated here: bare CR and LF were refused before."""
    if len(data) < chars:
        return None
    if len(data) > SPLIT_LINES_BYTES:
        found = re.compile(rb"^[^\r\n]{%d}" % chars, re.MULTILINE).search(data)
        return None if found is None else found.start()
    lines = data.split(b"\r\n")
    if max(map(len, lines)) < chars:
        return None
    start = 0
    for line in lines:
        if len(line) >= chars:
            return start
        start += len(line) + 2
    raise AssertionError("unreachable: a line was that long")


def check_content(data: bytes, limits: ContentLimits) -> Reply | None:
    """None if the (dot-unstuffed) DATA may be accepted; else the refusal, naming what and
    where. Checks run in order of severity: size, then forbidden bytes, then line length."""
    if len(data) > limits.max_bytes:
        return replies.TOO_LARGE.with_text(
            f"Message size exceeds fixed maximum message size ({limits.max_bytes} octets)")
    bare = _find_bare(data)
    if bare is not None:
        what = _NAMES[bare.group()]
        position = bare.start()
        return replies.BARE_NEWLINE.with_text(
            f"{what} not allowed: line {_line_number(data, position)}, octet {position + 1}")
    start = _long_line_start(data, limits.max_line - 1)
    if start is not None:
        end = data.find(b"\r\n", start)
        length = (end if end >= 0 else len(data)) - start + 2
        return replies.LINE_TOO_LONG.with_text(
            f"Line too long: line {_line_number(data, start)} is {length} octets with CRLF, "
            f"limit {limits.max_line}")
    return None
