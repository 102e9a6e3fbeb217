"""The mail log's lines (eventlog/mail_log.py): one per message step, message id first, each
value quoted so that no address, HELO name or reply can forge a line or a field."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katagate.eventlog import mail_log
from katagate.log_output import JsonFormatter
from katagate.schemas import (
    EVENT_TYPES,
    ActionDecided,
    BackupRemoved,
    BackupResendRequested,
    BackupResent,
    BackupRetained,
    DeliveryDeferred,
    DeliveryFailed,
    Detect,
    MailEvent,
    MessageDelivered,
    MessageReceived,
    NdrSent,
    NodeAddress,
    ProducerRef,
    QuarantineDenied,
    QueueActionRequested,
    RawLocation,
    ScanSubmitted,
    ScanTimedOut,
    VerdictReceived,
)

MID = "01M8ABCDEFGH"
NOW = datetime(2026, 12, 3, 7, 30, tzinfo=UTC)
INGEST = ProducerRef(stage="ingest", instance="ingest-0")
DECIDER = ProducerRef(stage="decider", instance="decider-0")


def envelope(producer: ProducerRef = DECIDER) -> dict[str, object]:
    return {"event_id": uuid.uuid4(), "occurred_at": NOW, "producer": producer,
            "message_id": MID}


def received(sender: str = "a@x.example", helo: str = "mx.x.example",
             to: tuple[str, ...] = ("b@y.example",)) -> MessageReceived:
    return MessageReceived(
        **envelope(INGEST), envelope_from=sender, envelope_to=list(to),
        client_ip=IPv4Address("127.0.0.1"), helo=helo, tls=False, size=233, sha256="0" * 64,
        subject="Quarterly figures", rule_id=None, settings_version=1,
        raw=RawLocation(topic="katagate.mail.raw", partition=0, offsets=[0], chunk_bytes=1))


def delivered(reply: str) -> MessageDelivered:
    return MessageDelivered(**envelope(), next_hop="127.0.0.1:2526", recipients=["b@y.example"],
                            reply=reply, tagged=False, attempts=1)


def fields_of(text: str) -> tuple[list[str], dict[str, str], str | None]:
    """A reader of the line's documented form: bare words, key=value (bare, or a JSON
    string), and a trailing (reply) with JSON string escapes."""
    reply = None
    if text.endswith(")"):
        text, _, tail = text.rpartition(" (")
        reply = json.loads(f'"{tail[:-1]}"')
    words, values = [], {}
    for match in re.finditer(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S+)|(\S+)', text):
        if match.group(3) is not None:
            words.append(match.group(3))
            continue
        value = match.group(2)
        values[match.group(1)] = json.loads(value) if value.startswith('"') else value
    return words, values, reply


def test_every_mail_event_has_a_line_of_its_own():
    # Given every mail event type of the union; then each has its own line, not the fallback.
    missing = [name for name, kind in EVENT_TYPES.items()
               if issubclass(kind, MailEvent) and not mail_log.described(kind)]
    assert missing == []


def test_the_ingest_line_names_the_envelope_and_the_client_but_not_the_subject():
    text = mail_log.line(received()).text()
    assert text == (f"{MID} ingest from=<a@x.example> to=<b@y.example> nrcpt=1 size=233 "
                    "client=127.0.0.1 helo=mx.x.example tls=no rule=none")
    assert "Quarterly" not in text


def test_the_null_sender_reads_as_empty_brackets():
    assert " from=<> " in mail_log.line(received(sender="")).text()


def test_a_verdict_a_decision_and_a_delivery_read_as_in_postfix():
    verdict = VerdictReceived(**envelope(ProducerRef(stage="scanner", instance="s-0")),
                              scan_id=MID, state="detect",
                              detects=[Detect(type="am", name="EICAR-Test-File")])
    decided = ActionDecided(**envelope(), action="delete", tag=None, backup=True,
                            skipped=False, reason="detected")
    assert mail_log.line(verdict).text() == (
        f"{MID} kata verdict=detected detects=EICAR-Test-File scan={MID}")
    assert mail_log.line(decided).text() == (
        f"{MID} action=delete backup=yes reason=detected skipped=no")
    assert mail_log.line(delivered("250 2.0.0 Ok: queued")).text() == (
        f"{MID} delivery to=<b@y.example> nrcpt=1 relay=127.0.0.1:2526 attempts=1 tagged=no "
        "status=sent (250 2.0.0 Ok: queued)")
    deferred = DeliveryDeferred(**envelope(), next_hop="127.0.0.1:2526", attempt=2,
                                reply="451 4.3.0 try later", retry_at=NOW + timedelta(minutes=5))
    assert mail_log.line(deferred).text() == (
        f"{MID} delivery relay=127.0.0.1:2526 attempt=2 retry_at=2026-12-03T07:35:00Z "
        "status=deferred (451 4.3.0 try later)")


def test_a_submission_names_the_central_node_as_host_and_port():
    submitted = ScanSubmitted(**envelope(ProducerRef(stage="scanner", instance="s-0")),
                              scan_id=MID, sensor_id="s1",
                              central_node=NodeAddress(address=IPv4Address("192.0.2.7"),
                                                       port=443))
    assert mail_log.line(submitted).text() == (
        f"{MID} kata submitted scan={MID} node=192.0.2.7:443")


def test_a_hostile_address_and_helo_stay_inside_their_quotes():
    # Given a sender that carries a CR LF and a forged line, and a HELO with a fake field
    sender = f'x@y\r\n{MID} action=deliver backup=no'
    text = mail_log.line(received(sender=sender, helo='a status=sent "b\\')).text()
    # Then the line is one line, and a reader gets each value back whole
    assert "\r" not in text
    assert "\n" not in text
    words, values, _ = fields_of(text)
    assert words == [MID, "ingest"]
    assert values["from"] == f"<{sender}>"
    assert values["helo"] == 'a status=sent "b\\'
    assert "action" not in values
    assert "status" not in values


def test_many_recipients_are_listed_up_to_the_bound_and_counted():
    to = tuple(f"r{n}@y.example" for n in range(mail_log.MAX_LISTED + 5))
    values = mail_log.line(received(to=to)).values()
    assert len(values["to"]) == mail_log.MAX_LISTED
    assert values["nrcpt"] == len(to)


printable_or_not = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)),
                           min_size=1, max_size=200)


@given(sender=printable_or_not, helo=printable_or_not, reply=printable_or_not)
def test_any_value_comes_back_whole_from_a_line_with_no_control_characters(sender, helo, reply):
    # Given any text in the client's envelope and the next hop's reply
    lines = [mail_log.line(received(sender=sender, helo=helo)).text(),
             mail_log.line(delivered(reply)).text()]
    # Then each line is printable ASCII only, and its values read back exactly
    for text in lines:
        assert all(0x20 <= ord(c) <= 0x7E for c in text), text
    _, values, _ = fields_of(lines[0])
    assert (values["from"], values["helo"]) == (f"<{sender}>", helo)
    assert fields_of(lines[1])[2] == reply


def test_a_json_record_is_one_line_with_time_level_stage_message_id_and_the_fields(caplog):
    # Given the mail log's record of a received message, formatted as JSON
    with caplog.at_level(logging.INFO, logger=mail_log.LOGGER):
        mail_log.write([received(sender="a@x\nforged")])
    (record,) = caplog.records
    text = JsonFormatter("decider").format(record)
    # Then it is one JSON object on one line, the writer's stage named
    assert "\n" not in text
    body = json.loads(text)
    assert {k: body[k] for k in ("level", "logger", "stage", "message_id", "event", "step")} == {
        "level": "INFO", "logger": "katagate.maillog", "stage": "ingest", "message_id": MID,
        "event": "mail.received", "step": "ingest"}
    assert body["from"] == "a@x\nforged"
    assert body["to"] == ["b@y.example"]
    assert body["size"] == 233
    assert body["tls"] is False
    assert body["time"].endswith("Z")
    assert body["occurred_at"] == "2026-12-03T07:30:00Z"


ADMIN = ProducerRef(stage="console", instance="console-0")
LATER = NOW + timedelta(days=30)


@pytest.mark.parametrize(("event", "text"), [
    (lambda: QuarantineDenied(**envelope(), size=9, bytes_in_use=100, messages_in_use=3,
                              reason="count_limit", limit_bytes=1000, limit_messages=3),
     "quarantine denied reason=count_limit size=9 usage=100 messages=3"),
    # Under hold, the quarantine and its waiting list full: denied at once, and said so
    (lambda: QuarantineDenied(**envelope(), size=9, bytes_in_use=100, messages_in_use=3,
                              reason="count_limit", limit_bytes=1000, limit_messages=3,
                              waiting_list_full=True),
     "quarantine denied reason=count_limit size=9 usage=100 messages=3 waiting_list_full=yes"),
    (lambda: ScanTimedOut(**envelope(), scan_id=None, deadline_at=NOW),
     "kata timeout scan=none deadline=2026-12-03T07:30:00Z"),
    (lambda: DeliveryFailed(**envelope(), next_hop="mx.y.example:25", attempts=3,
                            reply="550 5.1.1 no such user", recipients=["b@y.example"]),
     "delivery to=<b@y.example> nrcpt=1 relay=mx.y.example:25 attempts=3 status=bounced "
     "(550 5.1.1 no such user)"),
    (lambda: NdrSent(**envelope(), to="a@x.example", dsn_message_id="<d1@gw>",
                     reason="delivery_failed"),
     "ndr sent to=<a@x.example> reason=delivery_failed dsn=<d1@gw>"),
    (lambda: BackupRetained(**envelope(), size=233, bytes_in_use=233, copies_in_use=1,
                            stored_at=NOW, location=RawLocation(
                                topic="katagate.backup", partition=0, offsets=[0],
                                chunk_bytes=1), sha256="0" * 64, max_age_days=30,
                            expires_at=LATER, limit_bytes=2**30),
     "backup retained size=233 usage=233 copies=1 expires=2027-01-02T07:30:00Z"),
    (lambda: BackupRemoved(**envelope(), size=233, bytes_in_use=0, copies_in_use=0,
                           cause="deleted_by_admin", actor="ann", max_age_days=30,
                           limit_bytes=2**30),
     "backup removed cause=deleted_by_admin actor=ann size=233 usage=0 copies=0"),
    (lambda: BackupResendRequested(**envelope(ADMIN), actor="ann smith", envelope_from="",
                                   recipients=["c@y.example"], to_original=False,
                                   location=RawLocation(topic="katagate.backup", partition=0,
                                                        offsets=[0], chunk_bytes=1),
                                   sha256="0" * 64),
     'backup resend_requested actor="ann smith" to=<c@y.example> nrcpt=1 to_original=no'),
    (lambda: BackupResent(**envelope(), outcome="delivered", next_hop="127.0.0.1:2526",
                          recipients=["c@y.example"], reply="250 2.0.0 Ok"),
     "backup resent to=<c@y.example> nrcpt=1 relay=127.0.0.1:2526 status=sent (250 2.0.0 Ok)"),
    (lambda: QueueActionRequested(**envelope(ADMIN), action="bounce", actor="cli:root"),
     "queue action=bounce actor=cli:root"),
], ids=lambda value: value.split()[1] if isinstance(value, str) else None)
def test_the_new_steps_have_their_lines(event, text):
    assert mail_log.line(event()).text() == f"{MID} {text}"


def test_a_hold_reads_as_a_quarantine_step_and_its_outcome_says_held():
    # Given a message held outside the full quarantine, then decided by hold_outcome = reject
    from katagate.schemas import QuarantineHeld, QuarantineHoldEnded

    held = QuarantineHeld(**envelope(), size=233, bytes_in_use=900, messages_in_use=1,
                          reason="count_limit", rule_id=None, settings_version=3,
                          response_timeout_s=600, deadline_at=NOW + timedelta(seconds=600),
                          limit_bytes=1 << 30, limit_messages=1, waiting=1)
    ended = QuarantineHoldEnded(**envelope(), size=233, bytes_in_use=900, messages_in_use=1,
                                cause="action_applied", waiting=0)
    decided = ActionDecided(**envelope(), action="reject", tag=None, backup=False,
                            skipped=False, reason="timeout", held=True)
    # Then each has its line, and the decision says it was held
    assert mail_log.line(held).text() == (
        f"{MID} quarantine held reason=count_limit size=233 waiting=1 usage=900 messages=1 "
        "deadline=2026-12-03T07:40:00Z")
    assert mail_log.line(ended).text() == (
        f"{MID} quarantine hold_ended cause=action_applied waiting=0")
    assert mail_log.line(decided).text() == (
        f"{MID} action=reject backup=no reason=timeout skipped=no held=yes")


def test_a_notice_names_its_kind_the_message_it_is_about_and_its_addressees():
    # Given a notice composed about MID and one held for the digest; then each has its line,
    # the notice's own id first and the message's id as about=, so `grep MID` finds both.
    from katagate.schemas import NotificationComposed, NotificationHeld

    notice = {**envelope(), "message_id": "c0ffee" * 5 + "00", "about": MID}
    composed = NotificationComposed(**notice, kind="detect", audience="administrators",
                                    to=["soc@y.example"], data="Subject: x\r\n\r\nx\r\n")
    held = NotificationHeld(**notice, kind="skipped", line="anything")
    assert mail_log.line(composed).text() == (
        f"{'c0ffee' * 5}00 notice composed kind=detect about={MID} to=<soc@y.example> "
        "nrcpt=1 covers=0")
    assert mail_log.line(held).text() == (
        f"{'c0ffee' * 5}00 notice held kind=skipped about={MID} for=digest")


def test_a_split_copy_names_every_copy_and_a_reused_verdict_names_its_scan():
    # Given a copy of a message split by rule, and a verdict taken from another scan
    copies = [MID, f"{MID}S1"]
    split = received().model_copy(update={"copies": copies})
    reused = VerdictReceived(**envelope(ProducerRef(stage="scanner", instance="s-0")),
                             scan_id=MID, state="not_detected", cached_from="01M8OTHERSCAN")
    # Then the ingest line lists the copies, the kata line the scan the verdict came from
    assert mail_log.line(split).text().endswith(f" rule=none copies={MID},{MID}S1")
    assert mail_log.line(reused).text() == (
        f"{MID} kata verdict=not_detected scan={MID} cached_from=01M8OTHERSCAN")
    # And the projector's timeline entries show both fields
    from katagate.projector.timelines import entry

    assert entry(split)["fields"]["copies"] == copies
    assert entry(reused)["fields"]["cached_from"] == "01M8OTHERSCAN"
