"""SMTP smuggling: no end-of-data variant other than CRLF.CRLF ends a message, and the bare
CR/LF/NUL they carry get the whole message refused. Exactly zero MessageReceived each time:
never the smuggled one."""

from __future__ import annotations

import pytest

from tests.integration.test_ingest_harness import Ingest, RawClient, raw_records, received

pytestmark = pytest.mark.kafka

# The variants of notes/hostile-input.md, as they appear after the first message's text.
VARIANTS = [b"\n.\n", b"\n.\r", b"\r.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n", b"\r\n\x00.\r\n",
            b"\r\n.\r\r\n", b"\r\r\n.\r\r\n"]
SMUGGLED = (b"MAIL FROM:<ceo@example.net>\r\n"
            b"RCPT TO:<victim@example.net>\r\n"
            b"DATA\r\n"
            b"From: ceo@example.net\r\nSubject: smuggled\r\n\r\nwire the money\r\n")


@pytest.mark.parametrize("variant", VARIANTS, ids=[repr(v)[2:-1] for v in VARIANTS])
def test_a_smuggled_second_message_is_never_accepted(kafka_settings, variant):
    with Ingest(kafka_settings) as ingest:
        client = RawClient(ingest.address)
        client.envelope()
        # One write, as an attacker's MTA sends it: first message, fake end, second message,
        # then the real end of data.
        client.send(b"Subject: first\r\n\r\nhello" + variant + SMUGGLED + b".\r\n")
        reply = client.reply()
        assert reply.startswith("550 5.6.11 "), reply
        # Nothing more was answered: the "commands" were data. The session is still sane.
        assert client.cmd("RCPT TO:<bob@example.net>").startswith("503")
        assert client.cmd("QUIT").startswith("221")
        assert client.buffer == b""
        client.close()
    assert received(kafka_settings) == []
    assert raw_records(kafka_settings) == 0


def test_a_lone_dot_line_ends_the_message_and_the_rest_is_a_new_transaction(kafka_settings):
    """The control: with a real CRLF.CRLF the second message is the sender's own (pipelined),
    so both are accepted, each once."""
    with Ingest(kafka_settings) as ingest:
        client = RawClient(ingest.address)
        client.envelope()
        client.send(b"Subject: first\r\n\r\nhello\r\n.\r\n" + SMUGGLED + b".\r\n")
        assert client.reply().startswith("250 2.0.0 Ok: queued as ")
        assert [client.reply()[:3] for _ in range(3)] == ["250", "250", "354"]
        assert client.reply().startswith("250 2.0.0 Ok: queued as ")
        client.close()
    assert sorted(e.subject or "" for e in received(kafka_settings)) == ["first", "smuggled"]
