"""The notifier, pure: which events notify whom, the rate limit and its digest, and notices that
a hostile Subject cannot inject a header into."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime, timedelta
from email.policy import default as default_policy

import pytest
from pydantic import ValidationError

from katagate.decider.notifier import (
    Notifier,
    NotifierBook,
    Summary,
    connection_occurrence,
    occurrences,
    usage_occurrence,
)
from katagate.schemas import (
    ActionDecided,
    Detect,
    LateVerdictReceived,
    NotificationComposed,
    NotificationHeld,
    NotificationSettings,
    ProducerRef,
    QuarantineAdmitted,
)
from katagate.schemas.notifications import NoticeTemplate

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
REF = ProducerRef(stage="decider", instance="t")
ADMINS = NotificationSettings(admin_addresses=["soc@example.net"])
NOTIFIER = Notifier(REF, "gw.example.net")


def summary(m: str = "M0000001", subject: str = "Invoice") -> Summary:
    return Summary(m, "alice@example.org", ("bob@example.net", "carol@example.net"), subject)


def decided(m: str = "M0000001", reason: str = "detected", action: str = "delete",
            skipped: bool = False) -> ActionDecided:
    return ActionDecided(event_id=uuid.uuid4(), occurred_at=T0, producer=REF, message_id=m,
                         action=action, tag=None, backup=False, skipped=skipped, reason=reason)


def late(m: str = "M0000001", after: str = "forced_release") -> LateVerdictReceived:
    return LateVerdictReceived(event_id=uuid.uuid4(), occurred_at=T0, producer=REF,
                               message_id=m, scan_id=m, state="detect", after=after,
                               detects=[Detect(type="am", name="EICAR-Test-File")])


def parsed(notice: NotificationComposed) -> email.message.EmailMessage:
    message = email.message_from_string(notice.data, policy=default_policy)
    assert isinstance(message, email.message.EmailMessage)
    return message


def notify(book, event, settings=ADMINS, now=T0, summary_=None):
    found = occurrences(event, summary_ or summary(getattr(event, "message_id", "M0000001")),
                        settings)
    return NOTIFIER.notices(book, found, event, settings, now)


# -- which events notify -------------------------------------------------------------------

def test_given_a_detect_then_the_administrators_get_a_notice_naming_the_message():
    (notice,) = notify(NotifierBook(), decided())
    assert isinstance(notice, NotificationComposed)
    assert (notice.kind, notice.audience, notice.to, notice.about) == (
        "detect", "administrators", ["soc@example.net"], "M0000001")
    text = parsed(notice).get_content()
    for named in ("M0000001", "<alice@example.org>", "Invoice"):
        assert named in text
    assert "Action: delete" in text


@pytest.mark.parametrize(("reason", "notifies"), [
    ("size_limit", True), ("count_limit", True), ("not_connected", True), ("timeout", True),
    ("error", True), ("kata_disabled", False), ("rule_kata_disabled", False),
    ("too_large", False)])
def test_given_a_skipped_message_then_only_full_or_unreachable_notify(reason, notifies):
    events = notify(NotifierBook(), decided(reason=reason, action="deliver", skipped=True))
    assert [e.kind for e in events] == (["skipped"] if notifies else [])


def test_given_not_detected_then_nobody_is_told():
    assert notify(NotifierBook(), decided(reason="not_detected", action="deliver")) == []


def test_given_no_administrator_address_then_no_administrator_notice():
    assert notify(NotifierBook(), decided(), settings=NotificationSettings()) == []


def test_given_detect_notices_off_then_a_detect_is_not_told():
    settings = ADMINS.model_copy(update={"notify_detect": False})
    assert notify(NotifierBook(), decided(), settings=settings) == []


def test_given_recipients_told_of_deletions_then_a_deleted_message_tells_its_recipients():
    settings = ADMINS.model_copy(update={"notify_recipients_deleted": True,
                                         "notify_detect": False})
    for reason in ("detected", "deleted_by_admin"):
        # One notice per recipient: none of them learns of the others (Bcc included).
        bob, carol = notify(NotifierBook(), decided(reason=reason), settings=settings)
        assert [(n.kind, n.audience, n.to) for n in (bob, carol)] == [
            ("recipient_deleted", "recipients", ["bob@example.net"]),
            ("recipient_deleted", "recipients", ["carol@example.net"])]
        assert "carol" not in bob.data
        assert "bob" not in carol.data


def test_given_a_late_detect_then_the_notice_names_the_message_to_find_it_by():
    settings = ADMINS.model_copy(update={"notify_recipients_late_detect": True})
    admin, bob, carol = notify(NotifierBook(), late(), settings=settings)
    assert (admin.kind, bob.kind, carol.kind) == ("late_detect", "recipient_late_detect",
                                                  "recipient_late_detect")
    text = parsed(admin).get_content()
    for named in ("M0000001", "<alice@example.org>", "<bob@example.net>", "Invoice",
                  "EICAR-Test-File", "released it before the verdict"):
        assert named in text
    assert (bob.to, carol.to) == (["bob@example.net"], ["carol@example.net"])
    assert [e.kind for e in notify(NotifierBook(), late())] == ["late_detect"]


def test_given_a_late_detect_of_a_message_an_administrator_deleted_then_recipients_not_told():
    settings = ADMINS.model_copy(update={"notify_recipients_late_detect": True})
    assert [e.kind for e in notify(NotifierBook(), late(after="deleted_by_admin"),
                                   settings=settings)] == ["late_detect"]


def test_given_the_same_occurrence_twice_then_one_notice():
    book = NotifierBook()
    assert len(notify(book, decided())) == 1
    assert notify(book, decided()) == []


def admitted(used: int, limit: int = 100) -> QuarantineAdmitted:
    return QuarantineAdmitted(
        event_id=uuid.uuid4(), occurred_at=T0, producer=REF, message_id="M0000001", size=1,
        bytes_in_use=used, messages_in_use=1, rule_id=None, settings_version=1,
        response_timeout_s=60, deadline_at=T0 + timedelta(seconds=60), limit_bytes=limit,
        limit_messages=5000)


def test_given_usage_above_90_percent_then_one_notice_until_it_falls_below_80():
    book = NotifierBook()
    assert usage_occurrence(book, admitted(90), ADMINS) is None
    found = usage_occurrence(book, admitted(91), ADMINS)
    assert found is not None
    assert "91 of 100 bytes" in found.values["detail"]
    (notice,) = NOTIFIER.notices(book, [found], None, ADMINS, T0)
    book.evolve(admitted(95))
    assert usage_occurrence(book, admitted(95), ADMINS) is None  # told already
    book.evolve(admitted(79))
    again = usage_occurrence(book, admitted(92), ADMINS)
    assert again is not None
    (second,) = NOTIFIER.notices(book, [again], None, ADMINS, T0)
    assert second.message_id != notice.message_id


def test_given_the_connection_leaves_connected_then_administrators_are_told():
    book = NotifierBook()
    assert connection_occurrence(book, "connecting", "unreachable", ADMINS) is None
    found = connection_occurrence(book, "connected", "unreachable", ADMINS)
    assert found is not None
    assert found.kind == "connection_lost"
    assert connection_occurrence(book, "connected", "connected", ADMINS) is None


# -- the rate limit and the digest ---------------------------------------------------------

def test_given_1000_detects_in_a_minute_then_at_most_the_limit_of_notices_plus_one_digest():
    settings = ADMINS.model_copy(update={"rate_limit_per_hour": 20, "digest_interval_s": 300})
    book, sent = NotifierBook(), []
    for i in range(1000):
        now = T0 + timedelta(milliseconds=60 * i)
        m = f"M{i:07d}"
        sent += notify(book, decided(m), settings=settings, now=now, summary_=summary(m))
        sent += NOTIFIER.digest(book, settings, now)
    for second in range(0, 3600, 10):  # the hour after: the digest's timer ticks
        sent += NOTIFIER.digest(book, settings, T0 + timedelta(minutes=1, seconds=second))
    composed = [e for e in sent if isinstance(e, NotificationComposed)]
    singles = [e for e in composed if e.kind != "digest"]
    digests = [e for e in composed if e.kind == "digest"]
    assert len(singles) == 20
    (digest,) = digests
    assert len(digest.covers) == 980 == len([e for e in sent if isinstance(e, NotificationHeld)])
    first_held = next(e for e in sent if isinstance(e, NotificationHeld))
    # Sent at the first tick once the first held occurrence had waited the interval.
    assert timedelta(seconds=300) <= digest.occurred_at - first_held.occurred_at <= timedelta(
        seconds=310)
    assert "980 notifications" in str(parsed(digest)["Subject"])
    assert "M0000999" in parsed(digest).get_content()
    assert not book.held


def test_given_an_hour_passed_then_single_notices_flow_again():
    settings = ADMINS.model_copy(update={"rate_limit_per_hour": 1})
    book = NotifierBook()
    assert notify(book, decided("M0000001"))[0].type == "notification.composed"
    assert notify(book, decided("M0000002"), settings=settings)[0].type == "notification.held"
    later = T0 + timedelta(hours=1, seconds=1)
    assert notify(book, decided("M0000003"), settings=settings,
                  now=later)[0].type == "notification.composed"


def test_given_the_book_folded_from_the_log_then_it_holds_what_the_live_one_did():
    settings = ADMINS.model_copy(update={"rate_limit_per_hour": 2})
    live, events = NotifierBook(), []
    for i in range(5):
        events += notify(live, decided(f"M{i:07d}"), settings=settings)
    folded = NotifierBook()
    for event in events + events:  # the ledger topic and its mirror
        folded.evolve(event)
    assert (folded.sent, list(folded.held), folded.done) == (live.sent, list(live.held),
                                                              live.done)


# -- templates and header injection ---------------------------------------------------------

def test_given_an_unknown_placeholder_then_the_template_is_refused_naming_it():
    with pytest.raises(ValidationError, match=r"unknown placeholders \['sender_ip'\]"):
        NoticeTemplate(subject="{sender_ip} sent a threat", body="x")
    with pytest.raises(ValidationError, match="unknown placeholders"):
        NoticeTemplate(subject="{subject.__class__}", body="x")


def test_given_a_template_then_the_notice_uses_it():
    settings = ADMINS.model_copy(update={"templates": {"detect": NoticeTemplate(
        subject="Threat from {sender}", body="verdict={verdict} detects={detects}")}})
    (notice,) = notify(NotifierBook(), decided(), settings=settings)
    assert parsed(notice)["Subject"] == "Threat from <alice@example.org>"
    assert parsed(notice).get_content().strip() == "verdict=detected detects="


@pytest.mark.parametrize("hostile", [
    "Hi\r\nBcc: victim@example.com",
    "Hi\nTo: victim@example.com\n\nforged body",
    "Hi\rX-Injected: 1",
    "Hi\x00\x1b[31m\u2028X-Injected: 1\x85Reply-To: evil@example.com",
])
def test_given_a_hostile_subject_then_no_header_is_injected(hostile):
    (notice,) = notify(NotifierBook(), decided(), summary_=summary(subject=hostile))
    assert notice.data.isascii()
    message = parsed(notice)
    assert sorted(message.keys()) == sorted([
        "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding"])
    assert message["To"] == "soc@example.net"
    subject = str(message["Subject"])
    assert not any(c in subject for c in "\r\n\x00")
    body = message.get_content()
    assert not any(line.startswith(("Bcc:", "X-Injected", "Reply-To:", "forged"))
                   for line in body.splitlines())


def test_given_a_non_ascii_subject_then_it_is_encoded_per_rfc_2047():
    settings = ADMINS.model_copy(update={"templates": {"detect": NoticeTemplate(
        subject="Threat in: {subject}", body="{subject}")}})
    (notice,) = notify(NotifierBook(), decided(), settings=settings,
                       summary_=summary(subject="Счёт " * 40))
    assert notice.data.isascii()
    header = notice.data.split("\r\n\r\n", 1)[0]
    assert "=?utf-8?" in header.lower()
    assert all(len(line) <= 78 for line in header.split("\r\n"))
    assert str(parsed(notice)["Subject"]) == "Threat in: " + ("Счёт " * 40).strip()
    assert "Счёт" in parsed(notice).get_content()


def test_given_addresses_then_the_settings_check_them():
    with pytest.raises(ValidationError):
        NotificationSettings(admin_addresses=["soc@example.net\r\nBcc: x@y"])
    with pytest.raises(ValidationError):
        NotificationSettings(rate_limit_per_hour=1001)


def test_given_short_non_ascii_lines_then_the_body_is_still_encoded_to_ascii():
    # Given a subject of short non-ASCII text (which an 8-bit policy would send as 8bit)
    (notice,) = notify(NotifierBook(), decided(), summary_=summary(subject="Rechnung \ufffd é"))
    # Then the notice is ASCII, and reads back as the text
    assert notice.data.isascii()
    assert "Rechnung \ufffd é" in parsed(notice).get_content()


def test_given_a_long_log_then_the_book_keeps_only_the_last_hour_of_notices():
    book = NotifierBook()
    for i in range(100):
        notice = notify(NotifierBook(), decided(f"M{i:07d}"), now=T0 + timedelta(minutes=i))[0]
        book.evolve(notice)
    assert len(book.sent) == 60  # minutes 40..99: within an hour of the newest


def test_given_the_limit_reached_then_a_recipient_notice_is_held_naming_who_was_not_told():
    settings = ADMINS.model_copy(update={"rate_limit_per_hour": 0, "notify_detect": False,
                                         "notify_recipients_deleted": True})
    held, _carol = notify(NotifierBook(), decided(), settings=settings)
    assert isinstance(held, NotificationHeld)
    assert held.kind == "recipient_deleted"
    assert held.line == (
        '2026-12-03T10:00:00Z recipient_deleted M0000001: from <alice@example.org>, subject '
        '"Invoice" KATA detected a threat in it (recipients bob@example.net were not told)')
