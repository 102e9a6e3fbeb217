"""Where the header section of a raw message ends, pure; shared by ingest and the decider.

Stored messages are CRLF only (ingest refuses a bare CR or LF), so the header section ends at the
first empty line: the first CRLF CRLF, or a CRLF at the very start (no header at all). A message
without an empty line is all header (RFC 5322 section 3.5: the body is optional). Only a bounded
prefix is read, so a hostile message costs at most `limit` bytes of searching.
"""

from __future__ import annotations


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
