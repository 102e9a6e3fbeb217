"""Restore points: where a partition's restore may begin, and that apply's state and the
scanner's book rebuilt from there equal what a rebuild from the partition's start gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from katagate.decider.apply import Apply
from katagate.decider.settings import DeciderSettings
from katagate.eventlog.records import Consumed
from katagate.eventlog.restore_points import RestorePoints, decode, encode
from katagate.eventlog.settings import KafkaSettings
from katagate.scanner.book import Book
from katagate.schemas import (
    Event,
    MessageDelivered,
    MessageReceived,
    ScanSubmitted,
    ScanTimedOut,
    VerdictReceived,
    encode_event,
)
from tests.unit.test_decider_core import REF, T0, received
from tests.unit.test_decider_parcels import decided, deferred, event_id
from tests.unit.test_scanner_book import CTX, admitted
from tests.unit.test_scanner_book import received as scanner_received


def test_the_point_is_where_the_oldest_held_entry_began() -> None:
    points = RestorePoints()
    for offset, key in enumerate("abcd"):
        points.began(0, key, offset * 10)
    points.began(1, "x", 7)
    held = {"c", "d", "x"}
    assert points.point(0, held.__contains__) == 20
    assert points.point(1, held.__contains__) == 7
    held.discard("c")
    assert points.point(0, held.__contains__) == 30
    held.clear()
    assert points.point(0, held.__contains__) is None
    assert points.point(5, held.__contains__) is None


def test_an_entry_read_again_keeps_where_it_first_began_and_forget_drops_a_partition() -> None:
    points = RestorePoints()
    points.began(0, "a", 3)
    points.began(0, "a", 9)  # the same record read again after a rewind, or a duplicate
    assert points.point(0, lambda _k: True) == 3
    points.forget([0])
    assert points.point(0, lambda _k: True) is None


def test_a_commit_carries_its_point_and_anything_else_means_from_the_start() -> None:
    assert decode(encode(40), 100) == 40
    assert decode(encode(100), 100) == 100
    assert decode(encode(101), 100) is None  # past the committed offset: not ours to trust
    assert decode(None, 100) is None  # a commit from before points were committed
    assert decode("", 100) is None
    assert decode("restore-from:x", 100) is None
    assert decode("something else", 100) is None


def new_apply() -> Apply:
    # restore, restore_point and forget touch neither Kafka, the control view nor the clock.
    return Apply(KafkaSettings(bootstrap_servers="unused:9"), DeciderSettings(),
                 None,  # type: ignore[arg-type]
                 REF, lambda: datetime.now(UTC),
                 None)  # type: ignore[arg-type]


def delivered(m: str) -> MessageDelivered:
    return MessageDelivered(event_id=event_id(99), occurred_at=T0, producer=REF, message_id=m,
                            next_hop="127.0.0.1:25", recipients=["b@example.org"],
                            reply="250 ok", tagged=False, attempts=1)


@st.composite
def partitions(draw: st.DrawFn) -> list[Event]:
    """One partition's events: each message received, then perhaps decided, deferred and
    delivered, in order for the message and interleaved between messages."""
    lives: list[list[Event]] = []
    for n in range(draw(st.integers(min_value=0, max_value=12))):
        m = f"m{n:07d}"
        life: list[Event] = [received(m)]
        steps = draw(st.integers(min_value=0, max_value=3))
        if steps >= 1:
            life.append(decided(m))
        if steps >= 2:
            life.append(deferred(m, 1, draw(st.integers(min_value=1, max_value=60))))
        if steps >= 3:
            life.append(delivered(m))
        lives.append(life)
    log: list[Event] = []
    while any(lives):
        life = draw(st.sampled_from([life for life in lives if life]))
        log.append(life.pop(0))
    return log


def restored(log: list[Event], start: int) -> Apply:
    shell = new_apply()
    for offset in range(start, len(log)):
        shell.restore(Consumed("mail", 0, offset, None, encode_event(log[offset])))
    return shell


@settings(max_examples=150, deadline=None)
@given(partitions())
def test_apply_restored_from_its_point_holds_what_it_holds_restored_from_the_start(
        log: list[Event]) -> None:
    whole = restored(log, 0)
    point = whole.restore_point("mail", 0)
    if point is None:
        assert whole.parcels.live == {}
        return
    again = restored(log, point)
    assert again.parcels.live == whole.parcels.live
    later = T0 + timedelta(hours=1)
    assert ({p.message_id for p in again.parcels.due(later)}
            == {p.message_id for p in whole.parcels.due(later)})


@st.composite
def scanner_partitions(draw: st.DrawFn) -> list[Event]:
    """One partition as the scanner reads it: each message received, perhaps admitted,
    submitted, timed out or decided, and its verdict, interleaved between messages."""
    lives: list[list[Event]] = []
    for n in range(draw(st.integers(min_value=0, max_value=12))):
        m = f"m{n:07d}"
        life: list[Event] = [scanner_received(m, 100 + n)]
        if draw(st.booleans()):
            life.append(admitted(m, 200 + n))
            if draw(st.booleans()):
                life.append(ScanSubmitted(event_id=UUID(int=300 + n), occurred_at=T0,
                                          producer=REF, message_id=m, scan_id=m,
                                          central_node=CTX.central_node, sensor_id="sensor-1"))
            if draw(st.booleans()):
                life.append(ScanTimedOut(event_id=UUID(int=400 + n), occurred_at=T0,
                                         producer=REF, message_id=m, scan_id=m,
                                         deadline_at=T0))
            if draw(st.booleans()):
                life.append(VerdictReceived(event_id=UUID(int=500 + n), occurred_at=T0,
                                            producer=REF, message_id=m, scan_id=m,
                                            state="not_detected", detects=[]))
        lives.append(life)
    log: list[Event] = []
    while any(lives):
        life = draw(st.sampled_from([life for life in lives if life]))
        log.append(life.pop(0))
    return log


def book_from(log: list[Event], start: int) -> tuple[Book, RestorePoints]:
    # As ScanService._pump folds a partition: the book, and where each message began.
    book, points = Book(), RestorePoints()
    for offset in range(start, len(log)):
        book.evolve(log[offset], 0)
        if isinstance(log[offset], MessageReceived):
            points.began(0, log[offset].message_id, offset)
    return book, points


@settings(max_examples=150, deadline=None)
@given(scanner_partitions())
def test_the_scanners_book_rebuilt_from_its_point_is_the_book_rebuilt_from_the_start(
        log: list[Event]) -> None:
    whole, points = book_from(log, 0)
    point = points.point(0, whole.holds)
    if point is None:
        assert whole.scans == {}
        return
    again, _ = book_from(log, point)
    assert again.scans == whole.scans
