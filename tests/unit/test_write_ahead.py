"""The writer ahead of the loop's transaction (eventlog/write_ahead.py), without a broker: a
write returns once every record is acknowledged, with its place, and logs its mail events then,
once; a refused record, a missing acknowledgement or a refused produce() fail the write (the
loop then aborts its batch), and a fatal error gets the next write a new producer. The producer
is an in-process stand-in whose callbacks run only from poll(), as librdkafka's."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from uuid import UUID

import pytest
from confluent_kafka import KafkaError, KafkaException

from katagate.eventlog import mail_log
from katagate.eventlog.records import Outgoing
from katagate.eventlog.write_ahead import WriteAhead, WriteAheadFailed
from katagate.schemas import MessageDelivered
from tests.unit.test_decider_core import REF, T0
from tests.unit.test_ingest_writer import FakeProducer

MAIL = "t.mail"


class Producer(FakeProducer):
    """The stand-in, taking the partition a record names (Backup chunks name theirs)."""

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                headers: Any = None, on_delivery: Any = None, partition: int = -1) -> None:
        super().produce(topic, value, key, headers, on_delivery)


def delivered(n: int) -> MessageDelivered:
    return MessageDelivered(event_id=UUID(int=n), occurred_at=T0, producer=REF,
                            message_id=f"m000000{n}", next_hop="127.0.0.1:25",
                            recipients=["b@example.org"], reply="250 ok", tagged=False,
                            attempts=1)


@pytest.fixture
def ahead():
    producers: list[Producer] = []

    def factory() -> Producer:
        producers.append(Producer())
        return producers[-1]

    writer = WriteAhead(factory, MAIL, bound_s=0.5)
    yield writer, producers
    writer.close(0.1)


def writing(writer: WriteAhead, records: list[Outgoing]) -> dict[str, Any]:
    """The write on a thread of its own, as apply's delivery threads call it."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["places"] = writer.write(records)
        except WriteAheadFailed as exc:
            result["failed"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    result["thread"] = thread
    return result


def logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == mail_log.LOGGER]


def test_a_write_returns_once_each_record_is_acknowledged_and_logs_its_events_then(
        ahead, caplog):
    caplog.set_level(logging.INFO, logger=mail_log.LOGGER)
    writer, producers = ahead
    # Given two events written ahead
    call = writing(writer, [Outgoing.event(MAIL, delivered(1)), Outgoing.event(MAIL, delivered(2))])
    first, second = producers[0].wait_sent(2)
    # When only the second is acknowledged, then the write waits and nothing is logged
    producers[0].ack(second, partition=3)
    time.sleep(0.1)
    assert call["thread"].is_alive()
    assert logged(caplog) == []
    # When the first is, then the write returns their places in order, logged once each
    producers[0].ack(first, partition=3)
    call["thread"].join(2)
    assert call["places"] == [(3, 101), (3, 100)]
    assert len(logged(caplog)) == 2
    assert all("m000000" in line for line in logged(caplog))


def test_a_refused_record_fails_the_write_and_logs_nothing(ahead, caplog):
    caplog.set_level(logging.INFO, logger=mail_log.LOGGER)
    writer, producers = ahead
    call = writing(writer, [Outgoing.event(MAIL, delivered(1)), Outgoing.event(MAIL, delivered(2))])
    first, second = producers[0].wait_sent(2)
    producers[0].ack(first)
    producers[0].fail(second, KafkaError(KafkaError.NOT_ENOUGH_REPLICAS, "not enough"))
    call["thread"].join(2)
    assert "not enough" in str(call["failed"])
    assert logged(caplog) == []


def test_a_record_acknowledged_without_an_offset_fails_the_write_and_logs_nothing(
        ahead, caplog):
    caplog.set_level(logging.INFO, logger=mail_log.LOGGER)
    writer, producers = ahead
    call = writing(writer, [Outgoing.event(MAIL, delivered(1))])
    producers[0].ack_without_offset(producers[0].wait_sent(1)[0])  # a retried duplicate's
    call["thread"].join(2)
    assert isinstance(call.get("failed"), WriteAheadFailed), call
    assert logged(caplog) == []


def test_an_acknowledgement_missing_past_the_bound_fails_the_write(ahead, caplog):
    caplog.set_level(logging.INFO, logger=mail_log.LOGGER)
    writer, producers = ahead
    began = time.monotonic()
    call = writing(writer, [Outgoing.event(MAIL, delivered(1))])
    producers[0].wait_sent(1)
    call["thread"].join(3)
    took = time.monotonic() - began
    assert isinstance(call.get("failed"), WriteAheadFailed), call
    assert "not acknowledged" in str(call["failed"])
    assert 0.45 <= took < 2, took
    assert logged(caplog) == []


def test_a_produce_refused_fails_the_write(ahead):
    writer, producers = ahead
    writer.write([])  # builds the producer
    producers[0].refusals.append(KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE,
                                                           "too large")))
    with pytest.raises(WriteAheadFailed, match="too large"):
        writer.write([Outgoing.event(MAIL, delivered(1))])


def test_after_a_fatal_error_the_next_write_uses_a_new_producer(ahead):
    writer, producers = ahead
    call = writing(writer, [Outgoing.event(MAIL, delivered(1))])
    producers[0].wait_sent(1)
    producers[0].fail_fatally()
    call["thread"].join(2)
    assert isinstance(call["failed"], WriteAheadFailed)
    # The next write goes to a new producer, and succeeds there
    call = writing(writer, [Outgoing.event(MAIL, delivered(2))])
    deadline = time.monotonic() + 2
    while len(producers) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    (sent,) = producers[1].wait_sent(1)
    producers[1].ack(sent)
    call["thread"].join(2)
    assert call["places"] == [(0, 100)]
    assert producers[0].purged
