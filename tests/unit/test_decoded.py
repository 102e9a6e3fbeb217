"""Decoding remembered by the record's bytes (eventlog/decoded.py): one decoding serves every
reader of a process, what the process wrote is read back without decoding, and the memory it
takes is bounded."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from katagate.eventlog import decoded as memo
from katagate.schemas import Event, SchemaError, decode_event, encode_event
from tests.unit.fixtures.events import sample_events


@pytest.fixture(autouse=True)
def empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "_events", {})
    monkeypatch.setattr(memo, "_reading", False)


def counting(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every value the memo hands to decode_event."""
    calls: list[bytes] = []

    def decode(value: Any) -> Event:
        calls.append(value)
        return decode_event(value)

    monkeypatch.setattr(memo, "decode_event", decode)
    return calls


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_given_a_record_read_twice_then_it_is_decoded_once_into_the_same_event(
        event: Event, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    first = memo.decoded(encode_event(event))
    again = memo.decoded(bytes(bytearray(encode_event(event))))  # another reader's copy
    assert first == event
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


def test_given_a_process_that_reads_then_what_it_wrote_is_read_back_without_decoding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    received, decided = sample_events()[:2]
    memo.decoded(encode_event(received))  # the process reads through the memo
    written = encode_event(decided)
    memo.remember(written, decided)
    assert memo.decoded(bytes(bytearray(written))) is decided
    assert calls == [encode_event(received)]


def test_given_a_process_that_never_reads_then_what_it_writes_is_not_kept() -> None:
    event = sample_events()[0]
    memo.remember(encode_event(event), event)
    memo.remember(None, None)  # a tombstone: no value, no event
    assert memo._events == {}


def test_given_more_records_than_its_capacity_then_the_oldest_go(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "CAPACITY", 8)
    calls = counting(monkeypatch)
    event = sample_events()[0]
    values = [encode_event(event.model_copy(update={"message_id": f"msg{i:08d}"}))
              for i in range(20)]
    for value in values:
        memo.decoded(value)
    assert len(memo._events) == 8
    assert list(memo._events) == values[-8:]
    memo.decoded(values[0])  # gone: decoded again
    assert len(calls) == 21


def test_given_readers_on_several_threads_then_it_stays_bounded_and_every_event_is_right(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "CAPACITY", 16)
    event = sample_events()[0]
    values = [encode_event(event.model_copy(update={"message_id": f"msg{i:08d}"}))
              for i in range(200)]
    wrong: list[str] = []

    def read() -> None:
        try:
            for i, value in enumerate(values):
                if getattr(memo.decoded(value), "message_id", None) != f"msg{i:08d}":
                    wrong.append(f"msg{i:08d}")
        except Exception as exc:  # a thread's exception would otherwise pass unseen
            wrong.append(repr(exc))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert len(memo._events) <= 16 + 4  # each thread may add one past a race on the oldest
