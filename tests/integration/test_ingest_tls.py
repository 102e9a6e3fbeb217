"""STARTTLS: offered when a certificate is configured, required when asked, and plaintext
pipelined after STARTTLS is discarded, never executed."""

from __future__ import annotations

import smtplib
import ssl
import time

import pytest

from tests.integration.test_ingest_harness import (
    Ingest,
    RawClient,
    client_tls_context,
    raw_of,
    received,
    self_signed,
)
from tests.trace_field import split_trace

pytestmark = pytest.mark.kafka

MESSAGE = b"Subject: secret\r\n\r\nover TLS\r\n"


def test_starttls_is_offered_only_with_a_certificate_and_the_message_records_tls(
        kafka_settings, tmp_path):
    with Ingest(kafka_settings) as ingest, smtplib.SMTP(*ingest.address) as client:
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
    cert, key = self_signed(tmp_path)
    with Ingest(kafka_settings, tls_cert=cert, tls_key=key) as ingest, \
            smtplib.SMTP(*ingest.address) as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        code, _ = client.starttls(context=client_tls_context())
        assert code == 220
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
        assert not client.has_extn("auth")
        client.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
    [event] = received(kafka_settings)
    assert event.tls is True
    # And our Received field says so (RFC 3848), naming the one recipient
    trace, rest = split_trace(raw_of(kafka_settings, event))
    assert rest == MESSAGE
    assert f"with ESMTPS id {event.message_id}\r\n\tfor <bob@example.net>; ".encode() in trace


def test_require_tls_refuses_mail_before_starttls(kafka_settings, tmp_path):
    cert, key = self_signed(tmp_path)
    with Ingest(kafka_settings, tls_cert=cert, tls_key=key, require_tls=True) as ingest, \
            smtplib.SMTP(*ingest.address) as client:
        client.ehlo("client.test")
        code, reply = client.mail("alice@example.org")
        assert (code, reply.decode()) == (530, "5.7.0 Must issue a STARTTLS command first")
        client.starttls(context=client_tls_context())
        client.ehlo("client.test")
        client.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
    assert [e.tls for e in received(kafka_settings)] == [True]


def test_plaintext_pipelined_after_starttls_is_discarded(kafka_settings, tmp_path):
    cert, key = self_signed(tmp_path)
    with Ingest(kafka_settings, tls_cert=cert, tls_key=key) as ingest:
        client = RawClient(ingest.address)
        assert client.cmd("EHLO client.test").startswith("250")
        # CVE-2011-0411 style: commands injected in the same write as STARTTLS.
        client.send(b"STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\n"
                    b"RCPT TO:<bob@example.net>\r\n")
        assert client.reply() == "220 Ready to start TLS"
        assert client.buffer == b""
        client.sock = client_tls_context().wrap_socket(client.sock, server_hostname="mx.test")
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.cmd("EHLO client.test").startswith("250")
        # The injected MAIL was never executed: RCPT has no transaction to join.
        assert client.cmd("RCPT TO:<bob@example.net>") == "503 5.5.1 Error: need MAIL command"
        client.close()
    assert received(kafka_settings) == []


def test_a_session_that_starts_tls_is_counted_once(kafka_settings, tmp_path):
    cert, key = self_signed(tmp_path)
    # Given one session a client
    with Ingest(kafka_settings, tls_cert=cert, tls_key=key, max_sessions_per_client=1) as ingest:
        for attempt in range(3):
            # When the client's sessions start TLS one after the other
            client = RawClient(ingest.address)
            # Then each is greeted: the one before was counted once, and released at its end
            assert client.greeting.startswith("220 "), attempt
            assert client.cmd("EHLO client.test").startswith("250")
            assert client.cmd("STARTTLS").startswith("220")
            client.sock = client_tls_context().wrap_socket(client.sock, server_hostname="mx.test")
            assert client.cmd("QUIT").startswith("221")
            assert client.closed()
            client.close()
            time.sleep(0.2)  # its end reaches the session table
