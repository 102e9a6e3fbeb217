"""The DATA body as it arrives, line by line, into one buffer.

aiosmtpd keeps every line as its own bytearray until the final dot and then joins them: about
75 octets of object and allocator overhead per line, so a 201 MB message took 826 MB at its peak
(4 times its size) before any of our code ran. Here each line is copied into one growing buffer
as soon as it is read, with aiosmtpd's rules unchanged: a line is what ends in CRLF; a line of
one dot ends the data (RFC 5321 4.5.2); a leading dot is removed ("transparency"); a line over the
line limit or data over the size limit is read to the end and then refused as a whole.
What the buffer holds is reserved from the DATA budget of all sessions as it grows
(ingest/data_budget.py); a body the budget cannot hold is read to the end and refused too.
"""

from __future__ import annotations

import asyncio
import enum
import sys

from katagate.ingest.data_budget import Reservation

END = b".\r\n"


class Overflow(enum.Enum):
    NONE = "none"
    LINE_TOO_LONG = "line_too_long"  # answered 500, as aiosmtpd does
    TOO_MUCH = "too_much"  # answered 552
    OVER_BUDGET = "over_budget"  # answered 451 4.3.1: the sessions' budget is spent


class DataBody:
    """One DATA command's body: `read` it from the session's reader (or feed it lines and
    fragments); `done` once the final dot has arrived."""

    def __init__(self, *, max_bytes: int | None, max_line: int,
                 reservation: Reservation | None = None) -> None:
        self._max_bytes = max_bytes
        self._max_line = max_line
        self._reservation = reservation
        self._buffer = bytearray()
        self._received = 0  # octets on the wire, dots and overlong lines included
        self._mid_line = False  # after a fragment: a dot "line" here is not a line
        self.overflow = Overflow.NONE
        self.done = False

    async def read(self, reader: asyncio.StreamReader) -> None:
        """Reads to the final dot. This loop runs once per line of every message, so while
        nothing is wrong it keeps its state in locals; the first overflow hands over to
        `feed_line` and `feed_fragment`, which read the rest of a refused message."""
        readuntil, buffer, max_line = reader.readuntil, self._buffer, self._max_line
        received, limit = self._received, self._max_bytes or sys.maxsize
        reservation = self._reservation
        covered = reservation.held if reservation is not None else sys.maxsize
        while not self.done:
            try:
                line = await readuntil(b"\r\n")
            except asyncio.LimitOverrunError as error:
                self._received = received
                self.feed_fragment(await reader.read(error.consumed))
                break
            if line == END:
                self.done = True
            elif received + len(line) > limit or len(line) > max_line:
                self._received = received
                self.feed_line(line)
                break
            elif received + len(line) > covered:  # once per step of the budget, not per line
                self._received = received
                self.feed_line(line)
                if self.overflow is not Overflow.NONE:
                    break
                received = self._received
                covered = reservation.held if reservation is not None else sys.maxsize
            else:
                received += len(line)
                buffer += memoryview(line)[1:] if line[:1] == b"." else line
        else:
            self._received = received
            return
        while not self.done:
            try:
                self.feed_line(await readuntil(b"\r\n"))
            except asyncio.LimitOverrunError as error:
                self.feed_fragment(await reader.read(error.consumed))

    def feed_line(self, line: bytes) -> None:
        """A complete line, CRLF included, as `readuntil(b"\\r\\n")` returned it."""
        # Called once per line of every message: the checks are inline, cheapest first.
        if line == END and not self._mid_line:
            self.done = True
            return
        self._received += len(line)
        self._mid_line = False
        if self.overflow is not Overflow.NONE:
            return
        if self._max_bytes and self._received > self._max_bytes:
            self._refuse(Overflow.TOO_MUCH)
        elif len(line) > self._max_line:
            self._refuse(Overflow.LINE_TOO_LONG)
        elif self._reservation is not None and not self._reservation.cover(self._received):
            self._refuse(Overflow.OVER_BUDGET)
        elif line[:1] == b".":
            self._buffer += memoryview(line)[1:]
        else:
            self._buffer += line

    def feed_fragment(self, fragment: bytes) -> None:
        """Part of a line longer than the reader's limit: the line is refused."""
        self._count(fragment)
        self._mid_line = True
        if self.overflow is Overflow.NONE:
            self._refuse(Overflow.LINE_TOO_LONG)

    def content(self) -> bytes:
        """The unstuffed body. The buffer is released: twice the size for a moment, not for as
        long as the message is held."""
        content = bytes(self._buffer)
        self._buffer = bytearray()
        return content

    def _count(self, part: bytes) -> None:
        self._received += len(part)
        if (self.overflow is Overflow.NONE and self._max_bytes
                and self._received > self._max_bytes):
            self._refuse(Overflow.TOO_MUCH)

    def _refuse(self, overflow: Overflow) -> None:
        self.overflow = overflow
        self._buffer = bytearray()  # nothing more is kept: the whole message is refused
        if self._reservation is not None:
            self._reservation.release()  # and its share of the budget serves other sessions
