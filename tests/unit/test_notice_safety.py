"""Notices that quote hostile values: no encoded word adds a header field or a part, one
unusable recipient costs no other notice, a burst cannot grow a digest past its cap, and a
template cannot blow a value up (security review of issue 21: H1, H2, M1, M2, L4, L5)."""

from __future__ import annotations

import email
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from katagate.admin.errors import InvalidCommand
from katagate.admin.notifications import validate
from katagate.decider.notices import NOTICE_HEADERS, UnsafeNotice, check
from katagate.decider.notifier import (
    HELD_KEPT,
    NOTICES_DROPPED,
    Notifier,
    NotifierBook,
    Summary,
    occurrences,
)
from katagate.schemas import ActionDecided, NotificationComposed, NotificationHeld, ProducerRef
from katagate.schemas.notifications import MAX_NOTICE_BYTES, NoticeTemplate, NotificationSettings

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
REF = ProducerRef(stage="decider", instance="t")
NOTIFIER = Notifier(REF, "gw.example.net")
ADMINS = NotificationSettings(admin_addresses=["soc@example.net"])
# What ingest's decode_subject leaves of a Subject the attacker encoded twice (=?utf-8?b?...?=
# around this): an encoded word that decodes to a line break, a field and a body.
DOUBLE_ENCODED = ("=?utf-8?q?Invoice=0D=0AContent-Type:_text/html=0D=0A=0D=0A"
                  "<a_href=3Dhttp://evil.example>Release_your_mail</a>?=")
ENCODED_SENDER = "=?utf-8?q?a=0D=0ABcc:_x?=@evil.example"


def decided(m: str = "M0000001") -> ActionDecided:
    return ActionDecided(event_id=uuid.uuid4(), occurred_at=T0, producer=REF, message_id=m,
                         action="delete", tag=None, backup=False, skipped=False,
                         reason="detected")


def notify(book, settings, m="M0000001", subject="Invoice", sender="alice@example.org",
           recipients=("bob@example.net",), now=T0):
    found = occurrences(decided(m), Summary(m, sender, recipients, subject), settings)
    return NOTIFIER.notices(book, found, decided(m), settings, now)


@pytest.mark.parametrize("kind", ["detect", "recipient_deleted"])
def test_given_encoded_words_in_subject_and_sender_then_the_notice_has_only_its_own_fields(
        kind):
    # Given subject templates quoting {subject} and {sender}, and both values encoded words
    template = NoticeTemplate(subject="[katagate] {kind}: {subject} from {sender}".replace(
        "{kind}", kind), body="{subject}\n{sender}\n")
    settings = ADMINS.model_copy(update={"templates": {kind: template},
                                         "notify_recipients_deleted": True})
    # When a detect is told
    notices = [n for n in notify(NotifierBook(), settings, subject=DOUBLE_ENCODED,
                                 sender=ENCODED_SENDER) if n.kind == kind]
    # Then the notice is sent, with exactly the fields composed and one text part
    (notice,) = notices
    assert isinstance(notice, NotificationComposed)
    parsed = email.message_from_string(notice.data)
    assert tuple(parsed.keys()) == NOTICE_HEADERS
    assert not parsed.is_multipart()
    assert parsed.get_content_type() == "text/plain"
    subject = str(email.message_from_string(notice.data, policy=email.policy.default)
                  ["Subject"])
    assert "\n" not in subject
    assert "\r" not in subject
    assert "Invoice" in subject


def test_given_a_notice_with_a_field_more_then_the_check_refuses_it():
    # Given a notice that carries a header field (or a part) compose did not write
    good = ("From: a@b\r\nTo: soc@example.net\r\nSubject: x\r\nDate: d\r\nMessage-ID: <m@b>\r\n"
            "Auto-Submitted: auto-generated\r\nContent-Type: text/plain\r\n"
            "Content-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\nbody\r\n")
    check(good, ["soc@example.net"])
    injected = good.replace("Subject: x\r\n", "Subject: x\r\nContent-Type: text/html\r\n")
    # Then the check fails closed, in words that do not quote it
    for bad, to in ((injected, ["soc@example.net"]), (good, ["other@example.net"]),
                    (good + "x" * MAX_NOTICE_BYTES, ["soc@example.net"])):
        with pytest.raises(UnsafeNotice) as refused:
            check(bad, to)
        assert "text/html" not in str(refused.value)


def test_given_a_notice_that_cannot_be_composed_then_it_is_dropped_counted_and_not_logged(
        caplog):
    # Given an administrator address no notice can be written to, and a secret Subject
    settings = NotificationSettings(admin_addresses=["=?utf-8?q?x?=@example.net"])
    before = NOTICES_DROPPED.labels("detect")._value.get()
    # When a detect is told
    with caplog.at_level(logging.DEBUG):
        out = notify(NotifierBook(), settings, subject="Secret merger plans")
    # Then no notice, no exception, one drop counted, and the Subject in no log line
    assert out == []
    assert NOTICES_DROPPED.labels("detect")._value.get() == before + 1
    assert "Secret merger" not in caplog.text
    assert caplog.records


def test_given_150_long_subject_detects_in_one_interval_then_singles_and_one_capped_digest():
    # Given the review's burst: 150 detects with 2000-character non-ASCII Subjects
    book = NotifierBook()
    out = [e for i in range(150)
           for e in notify(book, ADMINS, m=f"M{i:07d}", subject="Projet secret " + "é" * 2000)]
    assert [e.type for e in out].count("notification.composed") == 20
    assert len(book.held) == 130
    # When the digest interval has passed
    (digest,) = NOTIFIER.digest(book, ADMINS, T0 + timedelta(seconds=901))
    # Then one digest within the cap, counting what it does not list, and the held list empty
    assert isinstance(digest, NotificationComposed)
    assert digest.kind == "digest"
    assert len(digest.data) <= MAX_NOTICE_BYTES
    body = email.message_from_string(digest.data, policy=email.policy.default).get_content()
    assert "more: see katagate messages search" in body
    assert "130 notifications" in digest.data
    assert len(digest.covers) == 130
    assert not book.held
    assert NOTIFIER.digest(book, ADMINS, T0 + timedelta(seconds=2000)) == []


def test_given_more_held_than_kept_then_the_rest_are_counted_and_the_digest_names_the_total():
    # Given a rate limit of 0 and more occurrences than the held list keeps
    settings = ADMINS.model_copy(update={"rate_limit_per_hour": 0})
    book = NotifierBook()
    for i in range(HELD_KEPT + 500):
        notify(book, settings, m=f"M{i:07d}")
    # Then the list stays bounded; the digest counts them all and the count starts again
    assert len(book.held) == HELD_KEPT
    assert book.held_over == 500
    (digest,) = NOTIFIER.digest(book, settings, T0 + timedelta(seconds=901))
    assert f"{HELD_KEPT + 500} notifications" in digest.data
    assert not book.held
    assert book.held_over == 0
    folded = NotifierBook()
    for i in range(HELD_KEPT + 500):
        folded.evolve(NotificationHeld(**NOTIFIER._common(f"H{i:07d}", None, None, T0),
                                       kind="detect", line="x"))
    folded.evolve(digest)
    assert folded.held_over == 0


def test_given_an_unusable_recipient_then_the_others_and_the_administrator_are_still_told(
        caplog):
    # Given a recipient written as a quoted local part, which ingest accepts
    settings = ADMINS.model_copy(update={"notify_recipients_deleted": True})
    with caplog.at_level(logging.WARNING):
        out = notify(NotifierBook(), settings, recipients=("bob@example.net",
                                                           '"a b"@example.net'))
    # Then the administrator's notice and bob's go out; the other address is named in the log
    assert [(e.kind, e.to) for e in out] == [("detect", ["soc@example.net"]),
                                             ("recipient_deleted", ["bob@example.net"])]
    assert '"a b"@example.net' in caplog.text


def test_given_a_rate_limit_then_each_recipient_notice_counts_against_it():
    # Given a limit of 2 notices an hour and a deleted message to 3 recipients
    settings = ADMINS.model_copy(update={"rate_limit_per_hour": 2, "notify_detect": False,
                                         "notify_recipients_deleted": True})
    out = notify(NotifierBook(), settings, recipients=("a@example.net", "b@example.net",
                                                       "c@example.net"))
    # Then two recipients are told one by one and the third is held for the digest
    assert [e.type for e in out] == ["notification.composed", "notification.composed",
                                     "notification.held"]


@pytest.mark.parametrize("text", ["{subject:>999999999}", "x {subject!r}", "{count:d}"])
def test_given_a_format_spec_or_conversion_then_the_template_is_refused_naming_it(text):
    with pytest.raises(ValidationError, match="format spec or conversion"):
        NoticeTemplate(subject=text, body="x")
    with pytest.raises(InvalidCommand) as refused:
        validate({"template.detect.subject": text})
    assert str(refused.value).startswith("template.detect.subject: placeholder {")
    assert text.split(" ")[-1] in str(refused.value)


def test_given_a_notice_too_large_with_the_values_then_it_goes_without_them(caplog):
    # Given a body quoting the Subject 800 times and a Subject of 998 non-ASCII characters
    template = NoticeTemplate(subject="[katagate] detect {message_id}", body="{subject}" * 800)
    settings = ADMINS.model_copy(update={"templates": {"detect": template}})
    with caplog.at_level(logging.DEBUG):
        (notice,) = notify(NotifierBook(), settings, subject="Geheim " + "é" * 990)
    # Then the notice still goes, within the cap, with the message's values withheld
    assert len(notice.data) <= MAX_NOTICE_BYTES
    body = email.message_from_string(notice.data, policy=email.policy.default).get_content()
    assert body.startswith("(withheld: see katagate messages show)")
    assert "Geheim" not in caplog.text


def test_given_a_recipients_placeholder_then_a_recipient_notice_names_only_its_recipient():
    template = NoticeTemplate(subject="Deleted", body="To: {recipients}\n")
    settings = ADMINS.model_copy(update={"templates": {"recipient_deleted": template},
                                         "notify_recipients_deleted": True,
                                         "notify_detect": False})
    bob, carol = notify(NotifierBook(), settings, recipients=("bob@example.net",
                                                              "carol@example.net"))
    assert "carol" not in bob.data
    assert "bob" not in carol.data
