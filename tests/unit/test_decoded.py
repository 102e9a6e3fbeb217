"""Decoding remembered by the record's bytes (eventlog/decoded.py): one decoding serves every
reader of a process, and what it holds is bounded by count and by bytes, also when threads
share it."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any

import pytest

from katagate.decider.mail_fold import MailFold
from katagate.eventlog import decoded as memo
from katagate.schemas import Event, MessageReceived, SchemaError, decode_event, encode_event
from tests.unit.fixtures.events import sample_events


@pytest.fixture(autouse=True)
def empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "_events", OrderedDict())
    monkeypatch.setattr(memo, "_bytes", 0)


def counting(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every value the memo hands to decode_event."""
    calls: list[bytes] = []

    def decode(value: Any) -> Event:
        calls.append(value)
        return decode_event(value)

    monkeypatch.setattr(memo, "decode_event", decode)
    return calls


def received(i: int, recipients: int = 1) -> bytes:
    event = next(e for e in sample_events() if isinstance(e, MessageReceived))
    return encode_event(event.model_copy(update={
        "message_id": f"msg{i:08d}",
        "envelope_to": [f"r{n}@example.net" for n in range(recipients)]}))


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_given_a_record_read_twice_then_it_is_decoded_once_into_the_same_event(
        event: Event, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    first = memo.decoded(encode_event(event))
    again = memo.decoded(bytes(bytearray(encode_event(event))))  # another reader's copy
    assert first == event == decode_event(encode_event(event))
    assert again is first
    assert len(calls) == 1


def test_given_a_refused_value_then_every_reader_gets_the_error_and_nothing_is_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    for _ in range(2):
        with pytest.raises(SchemaError, match="unknown event type"):
            memo.decoded(b'{"type": "no.such", "schema_version": 1}')
    assert len(calls) == 2
    assert memo._events == {}


def test_given_more_records_than_its_capacity_then_the_oldest_go(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "CAPACITY", 8)
    calls = counting(monkeypatch)
    values = [received(i) for i in range(20)]
    for value in values:
        memo.decoded(value)
    assert list(memo._events) == values[-8:]
    assert memo._bytes == sum(map(len, values[-8:]))
    memo.decoded(values[0])  # gone: decoded again
    assert len(calls) == 21


def test_given_more_bytes_than_it_may_hold_then_the_oldest_go(
        monkeypatch: pytest.MonkeyPatch) -> None:
    values = [received(i, recipients=50) for i in range(10)]
    monkeypatch.setattr(memo, "MAX_BYTES", 3 * len(values[0]) + 10)
    for value in values:
        memo.decoded(value)
    assert list(memo._events) == values[-3:]
    assert memo._bytes <= memo.MAX_BYTES


def test_given_a_value_larger_than_it_keeps_then_it_is_decoded_and_not_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    large = received(1, recipients=1000)  # a message to a thousand recipients
    assert len(large) > memo.MAX_VALUE_BYTES
    assert memo.decoded(large) == memo.decoded(large) == decode_event(large)
    assert len(calls) == 2
    assert memo._events == {}
    assert memo._bytes == 0


def test_given_readers_on_several_threads_then_it_stays_within_its_bounds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "CAPACITY", 16)
    # Decoding is slower than the races it must survive: a decode that returns at once, and
    # threads switched every microsecond, make them likely.
    events = {received(i): decode_event(received(i)) for i in range(400)}
    monkeypatch.setattr(memo, "decode_event", lambda value: events[value])
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    values = list(events)
    wrong: list[str] = []

    def read(offset: int) -> None:
        try:
            for i in range(4 * len(values)):
                value = values[(i + offset) % len(values)]
                if i % 3 == 0:  # the decider's own writes, remembered as they are encoded
                    memo.remember(value, events[value])
                if memo.decoded(value) is not events[value]:
                    wrong.append(f"{i}")
        except Exception as exc:  # a thread's exception would otherwise pass unseen
            wrong.append(repr(exc))

    try:
        threads = [threading.Thread(target=read, args=(n * 7,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []
    assert len(memo._events) <= 16
    assert memo._bytes == sum(map(len, memo._events))


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_given_a_record_this_process_wrote_then_its_readers_get_the_event_without_decoding(
        event: Event, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    value = encode_event(event)
    memo.remember(value, event)
    got = memo.decoded(bytes(bytearray(value)))  # as a reader reads it back
    # What the reader gets is what decoding would give: remembering is safe only because an
    # encoded event decodes equal to itself.
    assert got is event
    assert got == decode_event(value)
    assert calls == []


def test_given_the_deciders_outputs_then_they_are_remembered_as_they_are_encoded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    events = sample_events()
    fold = MailFold(state=None, mail_topic="katagate.mail")  # type: ignore[arg-type]
    records = fold.records(events)
    assert [memo.decoded(bytes(bytearray(r.value or b""))) for r in records] == events
    assert calls == []


def test_given_a_value_larger_than_it_keeps_or_empty_then_remembering_it_keeps_nothing(
        ) -> None:
    large = received(1, recipients=1000)
    memo.remember(large, decode_event(large))
    memo.remember(b"", decode_event(received(2)))  # a null record is read as b"": refused
    memo.remember(None, decode_event(received(3)))
    assert memo._events == {}
    assert memo._bytes == 0
    with pytest.raises(SchemaError):
        memo.decoded(b"")
