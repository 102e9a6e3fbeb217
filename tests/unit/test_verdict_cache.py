"""The verdict cache and the scan coalescing, pure: Given the mail events so far, When messages
are due for submission, Then which reuse a verdict, wait for the same content's scan, or go to
KATA (scanner/verdict_cache.py, scanner/book.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from katagate.eventlog.restore_points import RestorePoints
from katagate.scanner.book import Book, cached_verdict_events
from katagate.schemas import (
    Detect,
    MessageReceived,
    ProducerRef,
    QuarantineAdmitted,
    RawLocation,
    ScanSubmitted,
    VerdictReceived,
)
from katagate.schemas.types import NodeAddress

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
REF = ProducerRef(stage="test", instance="t")
KEY, OTHER = "a" * 64, "b" * 64
HOUR = 3600


def received(m: str, key: str | None = KEY, copies: list[str] | None = None,
             at: datetime = T0) -> MessageReceived:
    return MessageReceived(
        event_id=uuid4(), occurred_at=at, producer=REF, message_id=m,
        envelope_from="a@example.org", envelope_to=["b@example.org"], client_ip="192.0.2.1",
        helo="mx.example.org", tls=False, size=100, sha256="0" * 64, subject="hi",
        rule_id=None, settings_version=1, content_sha256=key, copies=copies or [],
        raw=RawLocation(topic="raw", partition=0, offsets=[5], chunk_bytes=100),
    )


def admitted(m: str, at: datetime = T0) -> QuarantineAdmitted:
    return QuarantineAdmitted(
        event_id=uuid4(), occurred_at=at, producer=REF, message_id=m, size=100,
        rule_id=None, settings_version=1, response_timeout_s=600,
        deadline_at=at + timedelta(seconds=600), limit_bytes=10_000_000, limit_messages=10,
        bytes_in_use=100, messages_in_use=1,
    )


def submitted(m: str) -> ScanSubmitted:
    return ScanSubmitted(event_id=uuid4(), occurred_at=T0, producer=REF, message_id=m,
                         scan_id=m, central_node=NodeAddress(address="127.0.0.1", port=443),
                         sensor_id="sensor-1")


def verdict(m: str, state: str = "detect", at: datetime = T0) -> VerdictReceived:
    detects = [Detect(type="am", name="EICAR-Test-File")] if state == "detect" else []
    return VerdictReceived(event_id=uuid4(), occurred_at=at, producer=REF, message_id=m,
                           scan_id=m, state=state, detects=detects)  # type: ignore[arg-type]


def book_with(*events) -> Book:
    book = Book()
    for event in events:
        book.evolve(event, 0)
    return book


def decided(book: Book, now: datetime, ttl_s: int = HOUR) -> tuple[list, list, list]:
    plan = book.reuse_plan(book.due_for_submit(now), now, ttl_s)
    return [(m, c.scan_id) for m, c in plan.reuse], plan.submit, plan.waiting


def test_given_a_detect_for_the_same_content_within_the_ttl_then_the_verdict_is_reused():
    book = book_with(received("m0000001"), admitted("m0000001"), submitted("m0000001"),
                     verdict("m0000001"), received("m0000002"), admitted("m0000002"))
    now = T0 + timedelta(minutes=59)
    assert decided(book, now) == ([("m0000002", "m0000001")], [], [])
    plan = book.reuse_plan(book.due_for_submit(now), now, HOUR)
    (event,) = cached_verdict_events(book, plan.reuse, now, REF)
    assert isinstance(event, VerdictReceived)
    assert (event.message_id, event.scan_id, event.cached_from) == (
        "m0000002", "m0000002", "m0000001")
    assert (event.state, [d.name for d in event.detects]) == ("detect", ["EICAR-Test-File"])


def test_given_the_ttl_passed_or_zero_or_other_content_then_the_message_goes_to_kata():
    book = book_with(received("m0000001"), admitted("m0000001"), submitted("m0000001"),
                     verdict("m0000001", "not_detected"), received("m0000002"),
                     admitted("m0000002"), received("m0000003", OTHER), admitted("m0000003"))
    assert decided(book, T0 + timedelta(seconds=HOUR + 1)) == (
        [], ["m0000002", "m0000003"], [])
    assert decided(book, T0, ttl_s=0) == ([], ["m0000002", "m0000003"], [])
    assert decided(book, T0)[0] == [("m0000002", "m0000001")]


def test_given_a_failure_or_timeout_verdict_then_nothing_is_cached():
    for state in ("error", "timeout"):
        book = book_with(received("m0000001"), admitted("m0000001"), submitted("m0000001"),
                         verdict("m0000001", state), received("m0000002"), admitted("m0000002"))
        assert decided(book, T0) == ([], ["m0000002"], [])
        assert len(book.cache) == 0


def test_a_reused_verdict_is_never_cached_again_so_an_entry_ages_from_its_kata_scan():
    book = book_with(received("m0000001"), admitted("m0000001"), submitted("m0000001"),
                     verdict("m0000001"), received("m0000002"), admitted("m0000002"))
    later = T0 + timedelta(minutes=30)
    plan = book.reuse_plan(book.due_for_submit(later), later, HOUR)
    for event in cached_verdict_events(book, plan.reuse, later, REF):
        book.evolve(event, 0)
    assert book.cache.entries[KEY].scan_id == "m0000001"
    assert book.cache.entries[KEY].at == T0


def test_given_identical_content_due_together_then_one_submission_and_the_others_wait():
    book = book_with(*(e for m in ("m0000001", "m0000002", "m0000003")
                       for e in (received(m), admitted(m))))
    assert decided(book, T0) == ([], ["m0000001"], ["m0000002", "m0000003"])
    book.evolve(submitted("m0000001"), 0)
    assert decided(book, T0) == ([], [], ["m0000002", "m0000003"])
    book.evolve(verdict("m0000001"), 0)
    assert decided(book, T0)[0] == [("m0000002", "m0000001"), ("m0000003", "m0000001")]


def test_given_the_scan_waited_for_ends_in_error_then_a_waiting_message_is_submitted():
    book = book_with(received("m0000001"), admitted("m0000001"), submitted("m0000001"),
                     received("m0000002"), admitted("m0000002"))
    assert decided(book, T0) == ([], [], ["m0000002"])
    book.evolve(verdict("m0000001", "error"), 0)
    assert decided(book, T0) == ([], ["m0000002"], [])


def test_given_the_cache_off_then_only_copies_of_one_split_message_share_a_scan():
    copies = ["m0000001", "m0000001S1"]
    book = book_with(*(e for m in copies for e in (received(m, copies=copies), admitted(m))),
                     received("m0000002"), admitted("m0000002"))
    assert decided(book, T0, ttl_s=0) == ([], ["m0000001", "m0000002"], ["m0000001S1"])
    book.evolve(submitted("m0000001"), 0)
    book.evolve(submitted("m0000002"), 0)
    # Its sibling's verdict, whatever its age and the setting.
    book.evolve(verdict("m0000001", at=T0 + timedelta(days=1)), 0)
    assert decided(book, T0 + timedelta(days=2), ttl_s=0)[0] == [("m0000001S1", "m0000001")]


def test_given_an_event_without_a_content_key_then_it_is_never_coalesced_nor_cached():
    book = book_with(received("m0000001", key=None), admitted("m0000001"),
                     received("m0000002", key=None), admitted("m0000002"))
    assert decided(book, T0) == ([], ["m0000001", "m0000002"], [])


def test_expired_entries_leave_unless_a_copy_still_waits_and_the_cache_is_bounded():
    book = book_with(received("m0000001"), admitted("m0000001"), submitted("m0000001"),
                     verdict("m0000001"))
    book.expire_cache(T0 + timedelta(seconds=HOUR), HOUR)
    assert book.holds("m0000001")
    book.expire_cache(T0 + timedelta(seconds=HOUR + 3), HOUR)  # within the 5 s between passes
    assert book.holds("m0000001")
    book.expire_cache(T0 + timedelta(seconds=HOUR + 6), HOUR)
    assert not book.holds("m0000001")
    assert len(book.cache) == 0
    small = Book()
    small.cache = type(small.cache)(max_entries=2)
    for i in range(3):
        m, key = f"m000000{i}", f"{i}" * 64
        for event in (received(m, key), admitted(m), submitted(m), verdict(m)):
            small.evolve(event, 0)
    assert list(small.cache.entries) == ["1" * 64, "2" * 64]
    assert not small.holds("m0000000")


def test_the_cache_rebuilt_from_the_restore_point_equals_the_cache_rebuilt_from_the_start():
    # Given a cached verdict, then messages whose scans ended: the restore point stays at the
    # cached scan's MessageReceived, so a restart rebuilds the entry.
    log = [received("m0000000", OTHER), admitted("m0000000"), submitted("m0000000"),
           verdict("m0000000", "error"),
           received("m0000001"), admitted("m0000001"), submitted("m0000001"),
           verdict("m0000001"), received("m0000002", OTHER), admitted("m0000002"),
           submitted("m0000002"), verdict("m0000002", "error")]
    live, points = Book(), RestorePoints()
    for offset, event in enumerate(log):
        live.evolve(event, 0)
        if isinstance(event, MessageReceived):
            points.began(0, event.message_id, offset)
    point = points.point(0, live.holds)
    assert point == 4
    rebuilt = book_with(*log[point:])
    assert rebuilt.cache.entries == live.cache.entries
    assert list(rebuilt.cache.entries) == [KEY]
