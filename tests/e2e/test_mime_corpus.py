"""The MIME corpus (tests/corpus/mime/cases.json) through the running gateway: each case, with
an EICAR line appended so that the KATA emulator detects it, goes over real SMTP to ingest on the
real broker; the rule skips with the subject tag. The sender gets the reply the case names, every
accepted message reaches a terminal event, and the next hop gets the message with only its
Subject changed; a copy for a rejecting rule gets an NDR that returns the headers and nothing
injected.

Every case fits the gateway's limits and a test's time, so all are sent: the largest is 3.6 MB
(parts_100000; its scan is the slowest part, the emulator parsing 100,000 parts with the email
package for about 10 s), and the refused one is answered as soon as its data is complete."""

from __future__ import annotations

import re
import smtplib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from katagate.schemas.raw_mail import TRACE_RESERVE
from tests.corpus_files import MIME, mime_message
from tests.e2e.gateway import Gateway, dump, rule
from tests.trace_field import without_trace

pytestmark = pytest.mark.kafka

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
TAG = b"[KATA detect]"
CUT_NOTE = b"X-Katagate-Note: original headers cut at 16 KiB"
# The NDR copy is left out for the 3.6 MB case: a second 10 s scan in the emulator, and what the
# NDR does with its short header section is shown by the smaller cases.
NO_NDR_COPY = {"parts_100000"}


def message(name: str) -> bytes:
    return mime_message(name) + EICAR + b"\r\n"  # every case ends with a CRLF


def send(port: int, data: bytes, recipient: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        code, reply = client.rcpt(recipient)
        assert code == 250, reply
        code, reply = client.data(data)
    return code, reply.decode()


def queued_id(reply: str) -> str:
    assert "queued as " in reply, reply
    return reply.rsplit("queued as ", 1)[1].split()[0]


def expected_delivery(raw: bytes, tagged: bool) -> bytes:
    """The corpus message as the next hop must get it: the tag goes in front of a Subject that
    begins the message, or a tagged Subject ends a header section that has none."""
    if not tagged:
        return raw
    if raw.startswith(b"Subject: "):
        return b"Subject: " + TAG + b" " + raw[len(b"Subject: "):]
    assert b"\r\nSubject:" not in raw.split(b"\r\n\r\n", 1)[0]
    end = raw.index(b"\r\n\r\n") + 2
    return raw[:end] + b"Subject: " + TAG + b"\r\n" + raw[end:]


@pytest.fixture(scope="module")
def sent(tmp_path_factory: Any, kafka_bootstrap: str) -> Any:
    """The gateway, and every case sent at once: name -> [(recipient, code, reply), ...]."""
    from tests.conftest import ensure_namespace

    rules = [rule("reject", "reject", recipients=("reject-*@example.net",), position=1),
             rule("skip", "skip", recipients=("*",), position=2)]
    gateway = Gateway(ensure_namespace(kafka_bootstrap), tmp_path_factory.mktemp("mime"),
                      rules=rules)
    jobs = [(c["name"], f"{c['name']}@example.net") for c in MIME]
    jobs += [(c["name"], f"reject-{c['name']}@example.net") for c in MIME
             if c["name"] not in NO_NDR_COPY]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            replies = list(pool.map(
                lambda job: (job[0], job[1], *send(gateway.smtp_port, message(job[0]), job[1])),
                jobs))
        by_case: dict[str, list[tuple[str, int, str]]] = {}
        for name, recipient, code, reply in replies:
            by_case.setdefault(name, []).append((recipient, code, reply))
        yield gateway, by_case
    finally:
        gateway.close()


@pytest.mark.parametrize("case", MIME, ids=[c["name"] for c in MIME])
def test_each_mime_case_gets_its_reply_and_a_detected_one_its_action(sent, case):
    gateway, by_case = sent
    expect, raw = case["expect"], message(case["name"])
    for recipient, code, reply in by_case[case["name"]]:
        assert f"{code} {reply}".startswith(expect["smtp"] + " "), (recipient, code, reply)
        if code != 250:
            continue
        m = queued_id(reply)
        events = gateway.wait_terminal(m, timeout_s=90)
        received = next(e for e in events if e.type == "mail.received")
        # The size stored: the client's bytes and ingest's Received field in front
        assert received.subject == expect["subject"]
        assert len(raw) < received.size <= len(raw) + TRACE_RESERVE
        verdict = next(e for e in events if e.type == "scan.verdict")
        assert verdict.state == "detect", dump(events)
        if recipient.startswith("reject-"):
            assert_ndr(gateway, m, raw, expect, events)
        else:
            assert_delivered(gateway, recipient, raw, expect, events)
    if expect["smtp"] != "250":
        # Refused: nothing of it was recorded.
        recipients = {recipient for recipient, _, _ in by_case[case["name"]]}
        assert not [e for e in gateway.mail_events()
                    if e.type == "mail.received" and recipients & set(e.envelope_to)]


def assert_delivered(gateway: Gateway, recipient: str, raw: bytes, expect: dict[str, Any],
                     events: list[Any]) -> None:
    delivered = next(e for e in events if e.type == "delivery.delivered")
    assert delivered.tagged is expect["tagged"], dump(events)
    (stored,) = [s for s in gateway.sink.messages() if s.recipients == [recipient]]
    assert stored.envelope_from == "alice@example.org"
    assert without_trace(stored.data) == expected_delivery(raw, expect["tagged"])
    if "no_new_line_starting" in expect:
        field = expect["no_new_line_starting"].encode()
        assert stored.data.count(b"\n" + field) == raw.count(b"\n" + field) == 0


def assert_ndr(gateway: Gateway, m: str, raw: bytes, expect: dict[str, Any],
               events: list[Any]) -> None:
    assert next(e for e in events if e.type == "ndr.sent").to == "alice@example.org"
    (report,) = [s for s in gateway.sink.messages() if s.recipients == ["alice@example.org"]
                 and f"X-Katagate-Message-Id: {m}\r\n".encode() in s.data]
    assert report.envelope_from == ""
    section = raw.split(b"\r\n\r\n", 1)[0]
    if expect["ndr_headers"] == "whole":
        # The stored header section: ingest's Received field, then the client's
        assert re.search(rb"\r\n\r\nReceived: from [^\r\n]*\r\n(?:\t[^\r\n]*\r\n)+"
                         + re.escape(section) + rb"\r\n--", report.data), report.data[-2000:]
    else:
        assert CUT_NOTE + b"\r\n--" in report.data
        assert len(report.data) < 300 * 1024
    assert EICAR not in report.data  # the body never goes back
    if "no_new_line_starting" in expect:
        assert report.data.count(b"\n" + expect["no_new_line_starting"].encode()) == 0
