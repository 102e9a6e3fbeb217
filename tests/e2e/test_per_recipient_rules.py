"""Per-recipient rules and the verdict cache through the whole gateway: a real SMTP client, the
real broker, the KATA emulator (which counts the scans it was sent), the demo sink."""

from __future__ import annotations

import json
import re
import smtplib

import pytest

from tests.e2e.gateway import Gateway, dump, rule

pytestmark = pytest.mark.kafka

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def mail(subject: bytes, body: bytes) -> bytes:
    return (b"From: alice@example.org\r\nTo: undisclosed-recipients:;\r\nSubject: " + subject +
            b"\r\n\r\n" + body + b"\r\n")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, kafka_bootstrap):
    from katagate.eventlog.settings import KafkaSettings
    from tests.conftest import ensure_namespace

    settings: KafkaSettings = ensure_namespace(kafka_bootstrap)
    rules = [rule("delete", "delete", recipients=("delete@example.net",), position=1),
             rule("skip", "skip", recipients=("skip@example.net",), position=2)]
    gateway = Gateway(settings, tmp_path_factory.mktemp("gw"), rules=rules)
    yield gateway
    gateway.close()


def submissions(gateway: Gateway) -> int:
    counts: dict[str, int] = json.loads(gateway.emulator.cli("scans", "count").stdout)
    return sum(counts.values())


def send(gateway: Gateway, data: bytes, recipients: tuple[str, ...]) -> str:
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        code, reply = client.data(data)
    assert code == 250, reply
    return reply.decode()


def test_given_a_delete_and_a_skip_rule_recipient_when_kata_detects_then_each_copy_follows_its_rule(
        gateway):
    # Given one message with EICAR to a recipient under Delete and one under Skip
    before = submissions(gateway)
    reply = send(gateway, mail(b"split me", EICAR), ("delete@example.net", "skip@example.net"))
    # Then the 250 names both copies
    match = re.fullmatch(r"2\.0\.0 Ok: queued as (\w+) (\w+) \(2 copies, one per rule\)", reply)
    assert match, reply
    first, second = match.groups()
    assert second == f"{first}S1"
    deleted, skipped = gateway.wait_terminal(first), gateway.wait_terminal(second)
    received = {e.message_id: e for e in deleted + skipped if e.type == "mail.received"}
    assert [(received[m].envelope_to, received[m].rule_id, received[m].copies)
            for m in (first, second)] == [
        (["delete@example.net"], "delete", [first, second]),
        (["skip@example.net"], "skip", [first, second])]
    assert received[first].raw.offsets == received[second].raw.offsets  # stored once
    # The Delete copy is discarded; the Skip copy is delivered tagged, to its recipient only
    assert "message.discarded" in dump(deleted)
    delivered = next(e for e in skipped if e.type == "delivery.delivered")
    assert (delivered.recipients, delivered.tagged) == (["skip@example.net"], True)
    sink = [m for m in gateway.sink.messages() if b"split me" in m.data]
    assert [m.recipients for m in sink] == [["skip@example.net"]]
    assert b"Subject: [KATA detect] split me" in sink[0].data
    # And the content went to the Central Node once: one copy's verdict is the other's scan
    verdicts = {e.message_id: e for e in deleted + skipped if e.type == "scan.verdict"}
    assert {v.state for v in verdicts.values()} == {"detect"}
    scanned = [e.message_id for e in deleted + skipped if e.type == "scan.submitted"]
    assert len(scanned) == 1, dump(deleted + skipped)
    (reused,) = [v for v in verdicts.values() if v.cached_from is not None]
    assert reused.cached_from == scanned[0]
    assert submissions(gateway) - before == 1


def test_given_a_verdict_for_identical_content_when_it_comes_again_then_the_verdict_is_reused(
        gateway):
    data = mail(b"twice", b"the same bytes, sent twice")
    before = submissions(gateway)
    first = gateway.send(data)
    first_events = gateway.wait_terminal(first)
    assert "scan.submitted" in dump(first_events)
    # When the same bytes come again within the time-to-live (an hour by default)
    second = gateway.send(data)
    events = gateway.wait_terminal(second)
    # Then the first scan's verdict is recorded for it, and KATA is not asked again
    verdict = next(e for e in events if e.type == "scan.verdict")
    assert (verdict.state, verdict.cached_from) == ("not_detected", first)
    assert "scan.submitted" not in dump(events)
    delivered = next(e for e in events if e.type == "delivery.delivered")
    assert delivered.recipients == ["bob@example.net"]
    assert submissions(gateway) - before == 1
