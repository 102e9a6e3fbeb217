"""Every row of the decision table (docs/ARCHITECTURE.md) through the whole gateway: a real SMTP
client, the real broker, the KATA emulator, the demo sink. What the sink received (bytes), what the
sender received (NDR), which events were written."""

from __future__ import annotations

import base64

import pytest

from tests.e2e.gateway import Gateway, dump, rule
from tests.trace_field import without_trace

pytestmark = pytest.mark.kafka

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def mail(subject: bytes, body: bytes, to: bytes = b"bob@example.net") -> bytes:
    return (b"From: alice@example.org\r\nTo: " + to + b"\r\nSubject: " + subject +
            b"\r\nMessage-ID: <" + base64.b16encode(subject[:8]) + b"@example.org>\r\n\r\n" +
            body + b"\r\n")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, kafka_bootstrap):
    from katagate.eventlog.settings import KafkaSettings
    from tests.conftest import ensure_namespace

    settings: KafkaSettings = ensure_namespace(kafka_bootstrap)
    rules = [
        rule("delete", "delete", recipients=("delete@example.net",), position=1),
        rule("reject", "reject", recipients=("reject@example.net",), position=2),
        rule("skip", "skip", recipients=("skip@example.net",), position=3),
        rule("skip-plain", "skip", tag=None, backup=False,
             recipients=("plain@example.net",), position=4),
        rule("nokata", "delete", recipients=("nokata@example.net",), position=5),
    ]
    rules[-1] = rules[-1].model_copy(update={"kata": rules[-1].kata.model_copy(
        update={"enabled": False})})
    gateway = Gateway(settings, tmp_path_factory.mktemp("gw"), rules=rules)
    yield gateway
    gateway.close()


def types(events) -> list[str]:
    return [e.type for e in events]


def sink_copy(gateway, message_id_header: bytes):
    return [m for m in gateway.sink.messages() if message_id_header in m.data]


def test_not_detected_is_delivered_unchanged(gateway):
    data = mail(b"hello", b"nothing to see here")
    m = gateway.send(data)
    events = gateway.wait_terminal(m)
    decided = next(e for e in events if e.type == "action.decided")
    assert (decided.action, decided.reason, decided.skipped) == ("deliver", "not_detected", False)
    (stored,) = sink_copy(gateway, b"nothing to see here")
    assert without_trace(stored.data) == data  # behind ingest's Received field
    assert "backup.stored" not in types(events), dump(events)


def test_detect_with_delete_discards_with_a_backup_copy(gateway):
    data = mail(b"delete me", EICAR, b"delete@example.net")
    m = gateway.send(data, recipients=("delete@example.net",))
    events = gateway.wait_terminal(m)
    assert [t for t in types(events) if t in ("backup.stored", "message.discarded")] == [
        "backup.stored", "message.discarded"], dump(events)
    assert [s for s in gateway.sink.messages() if "delete@example.net" in s.recipients] == []


def test_detect_with_reject_sends_an_ndr_to_the_sender(gateway):
    data = mail(b"reject me", EICAR, b"reject@example.net")
    m = gateway.send(data, recipients=("reject@example.net",))
    events = gateway.wait_terminal(m)
    ndr = next(e for e in events if e.type == "ndr.sent")
    assert ndr.to == "alice@example.org"
    assert [s for s in gateway.sink.messages() if "reject@example.net" in s.recipients] == []
    reports = [s for s in gateway.sink.messages() if s.recipients == ["alice@example.org"]
               and b"multipart/report" in s.data and m.encode() in s.data]
    assert len(reports) == 1
    assert reports[0].envelope_from == ""


def test_detect_with_reject_from_the_null_sender_sends_no_ndr(gateway):
    m = gateway.send(mail(b"reject null", EICAR, b"reject@example.net"), sender="",
                     recipients=("reject@example.net",))
    events = gateway.wait_terminal(m)
    suppressed = next(e for e in events if e.type == "ndr.suppressed")
    assert suppressed.reason == "null_sender"


def test_detect_with_skip_delivers_tagged_and_keeps_a_backup(gateway):
    data = mail(b"skip me", EICAR, b"skip@example.net")
    m = gateway.send(data, recipients=("skip@example.net",))
    events = gateway.wait_terminal(m)
    delivered = next(e for e in events if e.type == "delivery.delivered")
    assert delivered.tagged
    (stored,) = sink_copy(gateway, b"skip me")
    assert without_trace(stored.data) == data.replace(b"Subject: skip me",
                                                      b"Subject: [KATA detect] skip me")
    assert "backup.stored" in types(events)


def test_detect_with_skip_without_tag_or_backup_delivers_unchanged(gateway):
    data = mail(b"plain skip", EICAR, b"plain@example.net")
    m = gateway.send(data, recipients=("plain@example.net",))
    events = gateway.wait_terminal(m)
    (stored,) = sink_copy(gateway, b"plain skip")
    assert without_trace(stored.data) == data  # behind ingest's Received field
    assert "backup.stored" not in types(events)


def test_kata_off_for_the_rule_is_skipped_and_delivered_at_once(gateway):
    data = mail(b"no kata", EICAR, b"nokata@example.net")
    m = gateway.send(data, recipients=("nokata@example.net",))
    events = gateway.wait_terminal(m)
    denied = next(e for e in events if e.type == "quarantine.denied")
    assert denied.reason == "rule_kata_disabled"
    decided = next(e for e in events if e.type == "action.decided")
    assert (decided.skipped, decided.reason) == (True, "rule_kata_disabled")
    (stored,) = sink_copy(gateway, b"no kata")
    assert without_trace(stored.data) == data  # behind ingest's Received field
    assert "scan.submitted" not in types(events)


def test_a_message_sent_with_swaks_is_tagged_and_delivered(gateway):
    import subprocess

    from tests.integration.kata_harness import require_swaks

    require_swaks()
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{gateway.smtp_port}", "--from", "carol@example.org",
         "--to", "skip@example.net", "--header", "Subject: sent by swaks",
         "--body", EICAR.decode()],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    queued = [line for line in result.stdout.splitlines() if "queued as" in line]
    message_id = queued[-1].rsplit("queued as ", 1)[1].strip()
    events = gateway.wait_terminal(message_id)
    assert next(e for e in events if e.type == "delivery.delivered").tagged
    (stored,) = sink_copy(gateway, b"sent by swaks")
    assert b"Subject: [KATA detect] sent by swaks" in stored.data


def test_hostile_mime_does_not_stall_the_gateway_and_is_still_acted_on(gateway):
    nested = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
        for i in range(1000)
    )
    words = b" ".join(b"=?utf-8?q?w" + str(i).encode() + b"?=" for i in range(2000))
    data = (b"From: alice@example.org\r\nTo: skip@example.net\r\nSubject: " +
            b"\r\n ".join(words[i:i + 900] for i in range(0, len(words), 900)) +
            b"\r\nMIME-Version: 1.0\r\n" + nested + EICAR + b"\r\n")
    m = gateway.send(data, recipients=("skip@example.net",))
    events = gateway.wait_terminal(m, timeout_s=60)
    delivered = next(e for e in events if e.type == "delivery.delivered")
    assert delivered.tagged
    assert next(e for e in events if e.type == "scan.verdict").state == "detect"


def test_reject_with_the_ndr_setting_off_sends_no_ndr(tmp_path_factory, kafka_bootstrap):
    from tests.conftest import ensure_namespace

    gateway = Gateway(ensure_namespace(kafka_bootstrap), tmp_path_factory.mktemp("ndr-off"),
                      kata={"ndr_enabled": False},
                      rules=[rule("reject", "reject", recipients=("reject@example.net",))])
    try:
        m = gateway.send(mail(b"reject quietly", EICAR, b"reject@example.net"),
                         recipients=("reject@example.net",))
        events = gateway.wait_terminal(m)
        suppressed = next(e for e in events if e.type == "ndr.suppressed")
        assert suppressed.reason == "ndr_disabled"
        assert gateway.sink.messages() == []
    finally:
        gateway.close()
