"""Backscatter through the whole gateway (real SMTP, the broker, the KATA emulator, the demo sink
as the next hop, knowing every recipient but ghost*@example.net): what goes back to a sender who
may be forged. docs/SECURITY.md, "Backscatter"."""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.gateway import Gateway, dump
from tests.integration.kata_harness import wait_for

pytestmark = pytest.mark.kafka

GHOSTS = ("--reject-rcpt", "ghost*@example.net")
# A 200 KiB header section of folded fields: what an attacker would have reflected at the forged
# sender of a message that cannot be delivered.
FILLER = b"".join(b"X-Filler-%d: %s\r\n\t%s\r\n" % (i, b"a" * 90, b"b" * 90)
                  for i in range(200 * 1024 // 200))


def gateway_with(tmp: Path, kafka_bootstrap: str, **options: Any) -> Gateway:
    from tests.conftest import ensure_namespace

    return Gateway(ensure_namespace(kafka_bootstrap), tmp, kata={"ndr_enabled": False},
                   sink_args=GHOSTS, **options)


def test_given_the_ndr_switch_off_when_delivery_fails_for_good_then_the_dsn_still_goes_with_16_kib(
        tmp_path_factory, kafka_bootstrap):
    # Given the NDR switch off and no recipient verification, when a message with a 200 KiB
    # header section is accepted for a recipient the next hop refuses, then the DSN RFC 5321
    # 6.1 requires still goes to the sender, from <>, carrying at most 16 KiB of the headers.
    gateway = gateway_with(tmp_path_factory.mktemp("dsn"), kafka_bootstrap)
    try:
        data = b"From: alice@example.org\r\nSubject: undeliverable\r\n" + FILLER + b"\r\nx\r\n"
        m = gateway.send(data, recipients=("ghost@example.net",))
        events = gateway.wait_terminal(m)
        assert "delivery.failed" in [e.type for e in events], dump(events)
        (dsn,) = wait_for(lambda: [s for s in gateway.sink.messages()
                                   if s.recipients == ["alice@example.org"]], 30, "the DSN")
        assert dsn.envelope_from == ""
        assert b"X-Katagate-Note: original headers cut at 16 KiB" in dsn.data
        assert len(dsn.data) < 20 * 1024
    finally:
        gateway.close()


def test_given_recipient_verification_then_an_unknown_recipient_is_refused_and_nothing_bounces(
        tmp_path_factory, kafka_bootstrap):
    # Given recipient verification against the next hop, when a sender names bob and a ghost,
    # then the ghost gets 550 5.1.1 at RCPT, bob's copy is delivered, and no DSN goes anywhere.
    gateway = gateway_with(tmp_path_factory.mktemp("verify"), kafka_bootstrap,
                           ingest={"verify_recipients": True})
    try:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail("alice@example.org")
            assert client.rcpt("bob@example.net")[0] == 250
            code, reply = client.rcpt("ghost@example.net")
            assert (code, reply.decode()) == (550, (
                "5.1.1 <ghost@example.net>: Recipient address rejected: undeliverable address: "
                "the next hop does not know it (RCPT answered 550)"))
            code, reply = client.data(b"From: alice@example.org\r\nSubject: hi\r\n\r\nx\r\n")
        assert code == 250, reply
        m = reply.decode().rsplit("queued as ", 1)[1]
        events = gateway.wait_terminal(m)
        assert "delivery.delivered" in [e.type for e in events], dump(events)
        assert [s.recipients for s in gateway.sink.messages()] == [["bob@example.net"]]
        assert not [e for e in gateway.mail_events() if e.type in ("ndr.sent", "delivery.failed")]
    finally:
        gateway.close()
