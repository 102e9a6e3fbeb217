"""The headers katagate writes, through the whole gateway (real SMTP client, broker, KATA
emulator, demo sink): ingest's Received field in front of what was stored and delivered, the
verdict header on delivered mail, and a verdict a sender forged gone. The default rule's KATA
section, set to Skip, decides mail no rule matches."""

from __future__ import annotations

import re

import pytest

from tests.e2e.gateway import Gateway, dump, rule
from tests.e2e.test_decision_table import EICAR, sink_copy
from tests.trace_field import split_trace

pytestmark = pytest.mark.kafka

NAME = "X-KATA-Verdict"
FORGED = (b"X-KATA-Verdict: not-detected; scanned=2026-01-01T00:00:00Z\r\n"
          b"x-kata-verdict :\r\n\tnot-detected\r\n")
BODY_LINE = b"X-KATA-Verdict: not-detected (in the body: left alone)"


def mail(subject: bytes, body: bytes) -> bytes:
    return (b"From: alice@example.org\r\nTo: bob@example.net\r\n" + FORGED +
            b"Subject: " + subject + b"\r\n\r\n" + BODY_LINE + b"\r\n" + body + b"\r\n")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, kafka_bootstrap):
    from tests.conftest import ensure_namespace

    # The verdict header on, with every placeholder; the default rule's action Skip
    kata = {"verdict_header_name": NAME,
            "verdict_header_format": "{verdict}; scan={scan_id}; detects={detects}; "
                                     "id={message_id}; scanned={scanned_at}"}
    default = rule("default", "skip").model_copy(update={
        "name": "Default rule", "position": 2**31 - 1})
    gateway = Gateway(ensure_namespace(kafka_bootstrap), tmp_path_factory.mktemp("gw"),
                      kata=kata, rules=[default])
    yield gateway
    gateway.close()


def verdict_fields(data: bytes) -> list[bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return re.findall(rb"(?im)^x-kata-verdict[ \t]*:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", head)


def test_clean_mail_carries_our_received_field_and_verdict_and_no_forged_one(gateway):
    data = mail(b"clean", b"nothing to see here")
    m = gateway.send(data)
    events = gateway.wait_terminal(m)
    assert "delivery.delivered" in [e.type for e in events], dump(events)
    (stored,) = sink_copy(gateway, b"nothing to see here")
    # Ingest's Received field first, naming the client, the gateway, the id and the recipient
    trace, rest = split_trace(stored.data)
    assert re.fullmatch(
        rb"Received: from client\.example\.org \([A-Za-z0-9.-]+ \[127\.0\.0\.1\]\)\r\n"
        rb"\tby gw\.example\.net with ESMTP id " + m.encode() + rb"\r\n"
        rb"\tfor <bob@example\.net>; [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
        rb"\d\d:\d\d:\d\d \+0000\r\n", trace), trace
    # Then one verdict field, ours; the forged ones are gone, the body line is untouched
    received_event = next(e for e in events if e.type == "mail.received")
    assert received_event.size == len(trace) + len(data)  # what was stored: the field + data
    assert verdict_fields(stored.data) == [
        re.search(rb"X-KATA-Verdict: not-detected; scan=" + m.encode() + rb"; detects=none; id="
                  + m.encode() + rb"; scanned=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                  stored.data).group(0)]  # type: ignore[union-attr]
    assert rest.startswith(verdict_fields(stored.data)[0] + b"\r\n")  # ours: right after Received
    assert BODY_LINE in rest
    assert rest.replace(FORGED, b"").replace(
        verdict_fields(stored.data)[0] + b"\r\n", b"") == data.replace(FORGED, b"")


def test_a_detect_under_the_default_rule_set_to_skip_is_delivered_tagged_as_detected(gateway):
    m = gateway.send(mail(b"eicar", EICAR))
    events = gateway.wait_terminal(m)
    decided = next(e for e in events if e.type == "action.decided")
    assert (decided.action, decided.reason) == ("deliver", "detected"), dump(events)
    (stored,) = sink_copy(gateway, b"Subject: [KATA detect] eicar")
    (field,) = verdict_fields(stored.data)
    assert field.startswith(b"X-KATA-Verdict: detected; scan=" + m.encode() + b"; detects=")
    assert b"not-detected" not in stored.data.split(b"\r\n\r\n", 1)[0]
