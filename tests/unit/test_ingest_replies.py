"""Reply lines: named constants, and enhanced status codes on aiosmtpd's fixed replies."""

from __future__ import annotations

import pytest

from katagate.ingest import replies
from katagate.ingest.replies import enhance


def test_the_replies_of_the_brief():
    assert str(replies.KAFKA_UNAVAILABLE) == "451 4.3.0 Temporary failure, try again later"
    assert str(replies.TOO_MANY_RECIPIENTS) == "452 4.5.3 Too many recipients"
    assert str(replies.TLS_REQUIRED) == "530 5.7.0 Must issue a STARTTLS command first"
    assert str(replies.RELAY_DENIED).startswith("550 5.7.1 Relaying denied")
    assert str(replies.BARE_NEWLINE).startswith("550 5.6.11 ")
    assert str(replies.LINE_TOO_LONG).startswith("500 5.5.2 ")
    assert str(replies.TOO_LARGE).startswith("552 5.3.4 ")
    assert replies.QUEUED.text.format(message_id="X") == "Ok: queued as X"


@pytest.mark.parametrize(("line", "expected"), [
    ("250 OK", "250 2.0.0 Ok"),
    ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
    ("552 Error: Too much mail data",
     "552 5.3.4 Message size exceeds fixed maximum message size"),
    ("530 Must issue a STARTTLS command first",
     "530 5.7.0 Must issue a STARTTLS command first"),
    ("501 Syntax: MAIL FROM: <address>", "501 5.5.4 Syntax: MAIL FROM: <address>"),
    ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
    ("421 4.7.0 NOOP sent too many times", "421 4.7.0 NOOP sent too many times"),
    ("250 2.1.0 Sender ok", "250 2.1.0 Sender ok"),
    ("220 mx.example.org ESMTP katagate", "220 mx.example.org ESMTP katagate"),
    ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ("250-SIZE 1000", "250-SIZE 1000"),
])
def test_enhance(line, expected):
    assert enhance(line) == expected


def test_aiosmtpds_line_too_long_gets_ours():
    ours = "500 5.5.2 ours"
    assert enhance("500 Line too long (see RFC5321 4.5.3.1.6)", ours) == ours
