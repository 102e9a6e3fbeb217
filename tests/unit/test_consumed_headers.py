"""A consumed record's headers: converted from the client's message only when read, and then
the same as before (a null value read as empty bytes), equal and hashed like a tuple."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message

from katagate.eventlog.dead_letters import DLQ_STAGE, set_aside
from katagate.eventlog.records import H_TYPE, Consumed

HEADERS = [(H_TYPE, b"mail.received"), ("katagate-version", b"1"), ("empty", None)]


class Counting:
    """A client message that counts how often its headers are converted."""

    def __init__(self, message: Any) -> None:
        self._message, self.conversions = message, 0

    def headers(self) -> Any:
        self.conversions += 1
        return self._message.headers()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)


def message() -> Message:
    return Message(topic="t", partition=2, offset=7, key=b"k", value=b"{}", headers=HEADERS,
                   timestamp=(1, 1700000000000))


def test_given_a_consumed_record_when_its_headers_are_not_read_then_they_are_never_converted(
        ) -> None:
    counting = Counting(message())
    record = Consumed.from_message(counting)
    assert (record.topic, record.partition, record.offset, record.timestamp_ms) == (
        "t", 2, 7, 1700000000000)
    assert counting.conversions == 0
    # Read: converted once, whatever is asked after
    assert record.header(H_TYPE) == b"mail.received"
    assert record.header("empty") == b""  # a null value reads as empty bytes, as it did
    assert list(record.headers) == [(H_TYPE, b"mail.received"), ("katagate-version", b"1"),
                                    ("empty", b"")]
    assert len(record.headers) == 3
    assert record.headers[1] == ("katagate-version", b"1")
    assert counting.conversions == 1


def test_a_record_from_a_message_equals_and_hashes_as_one_built_with_a_tuple() -> None:
    built = Consumed("t", 2, 7, b"k", b"{}", ((H_TYPE, b"mail.received"),
                                              ("katagate-version", b"1"), ("empty", b"")),
                     1700000000000)
    consumed = Consumed.from_message(message())
    assert consumed == built
    assert built == consumed
    assert hash(consumed) == hash(built)
    assert consumed != Consumed("t", 2, 7, b"k", b"{}", (), 1700000000000)
    # Equal to the tuple it stands for only, as a tuple is: not to a list, nor to text
    assert consumed.headers == tuple(built.headers)
    assert consumed.headers != list(built.headers)
    assert Consumed.from_message(Message(topic="t", value=b"")).headers != ""


def test_a_dead_letter_carries_the_headers_read_from_the_message() -> None:
    letter = set_aside("test", "dlq", Consumed.from_message(message()), ValueError("bad"))
    names = [name for name, _value in letter.headers]
    assert names[:3] == [H_TYPE, "katagate-version", "empty"]
    assert DLQ_STAGE in names
