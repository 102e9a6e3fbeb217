"""A Backup copy's resend, the pure parts: the release mark prepended to the bytes as they are,
the location checked, and one `backup.resent` per request whatever the next hop said."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from katagate.decider.backup_resend import disarm_marks, location_problem, mark_released, resent
from katagate.decider.smtp_out import DeliveryOutcome, RecipientResult
from katagate.schemas import BackupResendRequested, RawLocation
from tests.unit.test_decider_core import REF, T0
from tests.unit.test_decider_outcomes import FX

M = "m0000001"
ORIGINAL = b"From: a@example.org\r\nSubject: =?koi8-r?b?8NLJ18XU?=\r\n\r\nbody\r\n"


def request(actor: str = "console:alice", topic: str = "katagate.backup",
            to: tuple[str, ...] = ("b@example.org",)) -> BackupResendRequested:
    return BackupResendRequested(
        event_id=UUID(int=5), occurred_at=T0, producer=REF, message_id=M,
        correlation_id=UUID(int=7), actor=actor, envelope_from="a@example.org",
        recipients=list(to), to_original=True,
        location=RawLocation(topic=topic, partition=2, offsets=[4, 5], chunk_bytes=1024),
        sha256="0" * 64)


def test_the_mark_goes_in_front_and_the_message_is_unchanged_after_it():
    # When a copy is marked as released by an administrator
    marked = mark_released(ORIGINAL, M, "console:alice", T0)
    # Then one header line, CRLF-ended like the message, then the original bytes as they were
    header, rest = marked.split(b"\r\n", 1)
    assert rest == ORIGINAL
    assert header == (b"X-Katagate-Released-From-Backup: m0000001; by=console:alice; "
                      b"at=Sun, 29 Nov 2026 10:00:00 +0000")


def test_a_message_with_bare_line_feeds_gets_a_bare_line_feed():
    marked = mark_released(b"Subject: x\n\nbody\n", M, "cli:root", T0)
    assert marked.endswith(b"+0000\nSubject: x\n\nbody\n")


def test_an_actor_with_spaces_quotes_or_other_scripts_is_one_quoted_ascii_value():
    # Given an actor name an administrator chose (no control characters: the schema refuses them)
    marked = mark_released(ORIGINAL, M, 'Jürgen "ops"; x', T0)
    header = marked.split(b"\r\n", 1)[0]
    # Then it stays inside one quoted string, in ASCII, on one line
    assert b'by="J\\\\xfcrgen \\"ops\\"; x"' in header
    assert header.isascii()


def test_a_location_outside_the_backup_topic_is_refused():
    assert location_problem(request(), "katagate.backup") is None
    assert "katagate.mail.raw" in str(location_problem(request(topic="katagate.mail.raw"),
                                                       "katagate.backup"))


def test_each_outcome_is_recorded_once_per_request_caused_by_it():
    now = T0 + timedelta(minutes=1)
    ok = DeliveryOutcome("delivered", "250 2.0.0 Ok", 250,
                         (RecipientResult("b@example.org", 250, "250 2.1.5 Ok"),))
    later = DeliveryOutcome("deferred", "451 4.3.0 try later", 451)
    cases = {"delivered": resent(FX, request(), ok, "", now),
             "deferred": resent(FX, request(), later, "", now),
             "unavailable": resent(FX, request(), None, "Backup copy unavailable: gone", now)}
    for kind, event in cases.items():
        assert event.outcome == kind
        assert event.causation_id == UUID(int=5)
        assert event.correlation_id == UUID(int=7)
        assert event.recipients == ["b@example.org"]
    assert cases["deferred"].reply == "451 4.3.0 try later"
    assert cases["unavailable"].reply == "Backup copy unavailable: gone"
    # And the same request gives the same event id (a redone step writes the same event)
    assert len({e.event_id for e in cases.values()}) == 1
    other = request().model_copy(update={"event_id": UUID(int=6)})
    assert resent(FX, other, ok, "", now).event_id != cases["delivered"].event_id


FORGED = (b"From: a@example.org\r\nx-katagate-released-from-backup : m0000009; by=admin\r\n"
          b"Subject: checked, safe\r\n\r\n"
          b"X-Katagate-Released-From-Backup: in the body, left alone\r\n")


def test_a_mark_the_message_arrived_with_is_disarmed_so_only_apply_writes_one():
    # Given mail whose sender wrote a release mark, to pass it off as checked and released
    # When it is delivered, then the mark is kept under another name; the body is untouched
    assert disarm_marks(FORGED) == FORGED.replace(
        b"x-katagate-released-from-backup :", b"X-Katagate-Received-Release-Mark :")
    assert disarm_marks(ORIGINAL) is ORIGINAL
    # When its Backup copy is resent, then the one mark in its header section is apply's own
    marked = mark_released(FORGED, M, "console:alice", T0)
    head = marked.split(b"\r\n\r\n", 1)[0].lower()
    assert head.count(b"x-katagate-released-from-backup") == 1
    assert head.startswith(b"x-katagate-released-from-backup: m0000001; by=console:alice")
