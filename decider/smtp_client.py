"""The SMTP client apply speaks with: `smtplib.SMTP`, keeping the name STARTTLS checks and
sending DATA in pieces, so a large message is never copied three times over."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12


class SmtpClient(smtplib.SMTP):
    """`smtplib.SMTP` that keeps STARTTLS's server_hostname: `tls_name` when given (the name
    the next hop's certificate must hold, e.g. when it is reached by IP address), else the host
    it connects to. (`SMTP(host, port)` sets it but connects in the constructor; `connect`
    alone does not.)
    """

    def __init__(self, *args: Any, tls_name: str | None = None, **kwargs: Any) -> None:
        self.tls_name = tls_name
        super().__init__(*args, **kwargs)

    def connect(self, host: str = "localhost", port: int = 0,
                source_address: Any = None) -> tuple[int, bytes]:
        self._host = self.tls_name or host
        return super().connect(host, port, source_address)

    def data(self, msg: Buffer | str) -> tuple[int, bytes]:
        """`smtplib.SMTP.data`, sent in pieces of about 1 MiB: the library builds the whole
        dot-stuffed copy and then two more with the final dot appended, three times a 200 MB
        message's size on top of the message itself."""
        if not isinstance(msg, bytes):
            return super().data(msg)
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        for piece in data_pieces(msg):
            self.send(piece)
        return self.getreply()


_PIECE_BYTES = 1024 * 1024
_LEADING_DOT = re.compile(rb"(?m)^\.")


def data_pieces(data: bytes, size: int = _PIECE_BYTES) -> Iterator[bytes]:
    """What `smtplib.SMTP.data` sends after the 354, in pieces of about `size` octets: the data
    dot-stuffed, a final CRLF if it lacks one, and the final dot."""
    start = 0
    while start < len(data):
        # Each piece ends just after an LF, so each starts a line and a leading dot is stuffed
        # exactly as in the whole message.
        cut = data.find(b"\n", start + size - 1)
        end = len(data) if cut < 0 else cut + 1
        yield _LEADING_DOT.sub(b"..", data[start:end])
        start = end
    yield b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"
