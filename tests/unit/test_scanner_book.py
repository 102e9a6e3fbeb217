"""The scan book: Given the mail events so far, When KATA answers, Then these events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from uuid import UUID

from katagate.scanner.book import Book, Ctx, submission_events, verdict_events
from katagate.scanner.kata_api import Refused, Submitted
from katagate.scanner.replies import DetectRecord, ScanStatus
from katagate.schemas import (
    LateVerdictReceived,
    MessageReceived,
    NodeAddress,
    ProducerRef,
    QuarantineAdmitted,
    QuarantineDenied,
    RawLocation,
    ScanFailed,
    ScanSubmitted,
    ScanTimedOut,
    VerdictReceived,
)

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
REF = ProducerRef(stage="test", instance="t")
CTX = Ctx(T0, ProducerRef(stage="scanner", instance="s-0"),
          NodeAddress(address=IPv4Address("127.0.0.1"), port=443), "sensor-1")


def received(m: str, n: int = 1) -> MessageReceived:
    return MessageReceived(
        event_id=UUID(int=n), occurred_at=T0, producer=REF, message_id=m,
        envelope_from="a@example.org", envelope_to=["b@example.org"], client_ip="192.0.2.1",
        helo="mx.example.org", tls=False, size=100, sha256="0" * 64, subject="hi",
        rule_id=None, settings_version=1,
        raw=RawLocation(topic="raw", partition=0, offsets=[5], chunk_bytes=100),
    )


def admitted(m: str, n: int = 2) -> QuarantineAdmitted:
    return QuarantineAdmitted(
        event_id=UUID(int=n), occurred_at=T0, producer=REF, message_id=m, size=100,
        rule_id=None, settings_version=1, response_timeout_s=600,
        deadline_at=T0 + timedelta(seconds=600), limit_bytes=10_000_000, limit_messages=10,
        bytes_in_use=100, messages_in_use=1,
    )


def book_with(*events) -> Book:
    book = Book()
    for event in events:
        book.evolve(event, 0)
    return book


def test_given_an_admitted_message_then_it_is_due_and_a_submission_records_scan_submitted():
    book = book_with(received("m0000001"), admitted("m0000001"))
    (scan,) = book.due_for_submit(T0)
    (event,) = submission_events(scan, Submitted("m0000001"), CTX)
    assert isinstance(event, ScanSubmitted)
    assert (event.scan_id, event.sensor_id) == ("m0000001", "sensor-1")
    book.evolve(event, 0)
    assert book.due_for_submit(T0) == []
    assert [s.message_id for s in book.awaiting_verdict()] == ["m0000001"]


def test_given_a_denied_or_unadmitted_message_then_nothing_is_submitted():
    assert book_with(received("m0000001")).due_for_submit(T0) == []
    denied = QuarantineDenied(
        event_id=UUID(int=3), occurred_at=T0, producer=REF, message_id="m0000001", size=100,
        reason="count_limit", bytes_in_use=0, messages_in_use=10, limit_bytes=10_000_000,
        limit_messages=10,
    )
    assert len(book_with(received("m0000001"), denied)) == 0


def test_given_a_429_then_a_retriable_failure_and_the_scan_waits_its_backoff():
    book = book_with(received("m0000001"), admitted("m0000001"))
    (scan,) = book.due_for_submit(T0)
    (failed,) = submission_events(scan, Refused("busy", "429 limit", status=429), CTX)
    assert isinstance(failed, ScanFailed)
    assert (failed.reason, failed.final, failed.attempt) == ("busy", False, 1)
    book.evolve(failed, 0)
    assert book.due_for_submit(T0) == []
    assert len(book.due_for_submit(T0 + timedelta(seconds=3))) == 1


def test_given_a_413_then_a_final_failure_ends_the_scan():
    book = book_with(received("m0000001"), admitted("m0000001"))
    (scan,) = book.due_for_submit(T0)
    (failed,) = submission_events(scan, Refused("too_large", "413", final=True, status=413), CTX)
    book.evolve(failed, 0)
    assert len(book) == 0


def test_given_a_detect_then_a_verdict_with_its_detects_and_other_scans_are_ignored():
    book = book_with(received("m0000001"), admitted("m0000001"))
    book.evolve(submission_events(book.due_for_submit(T0)[0], Submitted("m0000001"), CTX)[0], 0)
    events = verdict_events(
        book,
        [ScanStatus("m0000001", "detect"), ScanStatus("someoneelse", "detect"),
         ScanStatus("m0000002", "processing")],
        [DetectRecord("m0000001", "am", "EICAR-Test-File", None)],
        CTX,
    )
    (verdict,) = events
    assert isinstance(verdict, VerdictReceived)
    assert verdict.state == "detect"
    assert [(d.type, d.name) for d in verdict.detects] == [("am", "EICAR-Test-File")]
    book.evolve(verdict, 0)
    assert len(book) == 0


def test_given_a_timed_out_scan_then_its_verdict_is_a_late_one():
    book = book_with(received("m0000001"), admitted("m0000001"))
    book.evolve(submission_events(book.due_for_submit(T0)[0], Submitted("m0000001"), CTX)[0], 0)
    book.evolve(ScanTimedOut(event_id=UUID(int=9), occurred_at=T0, producer=REF,
                            message_id="m0000001", scan_id="m0000001", deadline_at=T0), 0)
    (late,) = verdict_events(book, [ScanStatus("m0000001", "not_detected")], [], CTX)
    assert isinstance(late, LateVerdictReceived)
    assert late.after == "timeout"


def test_the_same_step_after_a_crash_makes_the_same_event_id():
    book = book_with(received("m0000001"), admitted("m0000001"))
    (scan,) = book.due_for_submit(T0)
    first = submission_events(scan, Submitted("m0000001"), CTX)[0]
    again = submission_events(scan, Submitted("m0000001"), CTX)[0]
    assert first.event_id == again.event_id
