"""Ingest's Received field in front of every stored and delivered message (ingest/trace.py),
for tests that compare those bytes with what a client sent."""

from __future__ import annotations

import re

_TRACE = re.compile(rb"\AReceived: from [^\r\n]*\r\n(?:\t[^\r\n]*\r\n)+")


def split_trace(data: bytes) -> tuple[bytes, bytes]:
    """Ingest's Received field, and the client's bytes after it."""
    found = _TRACE.match(data)
    assert found is not None, f"no Received field of ours in front: {data[:300]!r}"
    return found.group(0), data[found.end():]


def without_trace(data: bytes) -> bytes:
    return split_trace(data)[1]
