"""Apply restarted or rebuilt after writing outcomes ahead of its batch's commit
(docs/decisions/0008-apply-writes-outcomes-ahead.md), without a broker: an outcome it recorded
ahead (read by `restore_ahead`, past the committed offset) survives its message's
MessageReceived (or a notice's NotificationComposed) being read again, so nothing it did is
carried out again, a deferral is retried at its time, and a stored Backup copy is not stored
twice. Without anything ahead, everything is carried out as before.

Apply's writer ahead runs on an in-process stand-in producer that acknowledges each record
from its poll(); nothing listens on the next hop's port (9) nor the broker's, so a message
carried out records an outcome (its raw bytes unavailable, or its delivery deferred): a batch
that writes nothing carried out nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from confluent_kafka import KafkaError

from katagate.decider.apply import Apply
from katagate.decider.settings import DeciderSettings
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.write_ahead import WriteAhead, WriteAheadFailed
from katagate.schemas import (
    ActionDecided,
    BackupStored,
    DeliveryDeferred,
    Event,
    MessageDelivered,
    NotificationComposed,
    RawLocation,
    decode_event,
)
from tests.unit.test_decider_core import REF, T0, received
from tests.unit.test_write_ahead import Producer

M = "m0000001"
NOTICE = "ab" * 16
MAIL = "t.mail"


class Acking(Producer):
    """Acknowledges every record (from its next poll), or refuses them with `refuse`."""

    refuse: KafkaError | None = None

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                headers: Any = None, on_delivery: Any = None, partition: int = -1) -> None:
        super().produce(topic, value, key, headers, on_delivery, partition)
        if self.refuse is not None:
            self.fail(self.sent[-1], self.refuse)
        else:
            self.ack(self.sent[-1])

    def events(self) -> list[Event]:
        return [decode_event(s.value) for s in self.records(MAIL)]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def apply():
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9", topic_prefix="t", config_file=None,
                          config_dir=None, principal=None, request_timeout_s=1)
    producer, clock = Acking(), Clock()
    writer = WriteAhead(lambda: producer, MAIL, bound_s=2)
    handler = Apply(kafka, DeciderSettings(next_hop_port=9, smtp_timeout_s=1, helo_name="gw"),
                    None, REF, clock, writer)  # type: ignore[arg-type]
    yield handler, producer, clock
    handler.close()
    writer.close(0.1)


def record(offset: int, event: Event) -> Consumed:
    return Consumed(MAIL, 0, offset, event.message_id.encode(),  # type: ignore[attr-defined]
                    Outgoing.event(MAIL, event).value)


def decided(backup: bool = True) -> ActionDecided:
    return ActionDecided(event_id=UUID(int=1), occurred_at=T0, producer=REF, message_id=M,
                         action="deliver", tag=None, backup=backup, skipped=False,
                         reason="not_detected")


def stored() -> BackupStored:
    return BackupStored(event_id=UUID(int=2), occurred_at=T0, producer=REF, message_id=M,
                        location=RawLocation(topic="t.backup", partition=0, offsets=[7],
                                             chunk_bytes=1),
                        sha256="0" * 64)


def delivered(m: str = M) -> MessageDelivered:
    return MessageDelivered(event_id=UUID(int=3), occurred_at=T0, producer=REF, message_id=m,
                            next_hop="127.0.0.1:9", recipients=["b@example.org"],
                            reply="250 ok", tagged=False, attempts=1)


def deferred() -> DeliveryDeferred:
    return DeliveryDeferred(event_id=UUID(int=4), occurred_at=T0, producer=REF, message_id=M,
                            next_hop="127.0.0.1:9", attempt=1, reply="451 4.3.0 later",
                            retry_at=T0 + timedelta(seconds=30))


def composed() -> NotificationComposed:
    return NotificationComposed(
        event_id=UUID(int=5), occurred_at=T0, producer=REF, message_id=NOTICE, kind="detect",
        audience="administrators", about=M, to=["soc@example.net"],
        data="Subject: x\r\n\r\nx\r\n")


def restarted(handler: Apply, *ahead: Event) -> None:
    """A restore whose committed offset is 10: nothing before it, `ahead` after the batch."""
    for offset, event in enumerate(ahead, start=20):
        handler.restore_ahead(record(offset, event))


def test_a_message_delivered_ahead_is_not_delivered_again_when_its_batch_is_read_again(apply):
    handler, producer, _clock = apply
    # Given BackupStored and MessageDelivered written ahead of a batch that never committed
    restarted(handler, stored(), delivered())
    # When the batch (MessageReceived, ActionDecided) is read again
    results = handler.decide_batch([record(10, received(M)), record(11, decided())])
    # Then nothing is carried out nor written, and the message is no longer carried
    assert results == [[], []]
    assert producer.sent == []
    assert not handler.parcels.holds(M)


def test_a_deferral_written_ahead_is_retried_at_its_time_without_a_second_backup(apply):
    handler, producer, clock = apply
    # Given the Backup copy stored and the delivery deferred, written ahead
    restarted(handler, stored(), deferred())
    # When the batch is read again, then nothing is carried out at once
    assert handler.decide_batch([record(10, received(M)), record(11, decided())]) == [[], []]
    assert producer.sent == []
    parcel = handler.parcels.live[M]
    # And the message waits for its retry, its Backup copy stored (carried out skips it)
    assert (parcel.attempts, parcel.retry_at, parcel.backup_done) == (
        1, T0 + timedelta(seconds=30), True)
    clock.now = T0 + timedelta(seconds=29)
    assert handler.tick() == []
    assert producer.sent == []
    # And at its time it is carried out once, its outcome written ahead, none for the loop
    clock.now = T0 + timedelta(seconds=30)
    assert handler.tick() == []
    (outcome,) = producer.events()
    assert outcome.message_id == M  # type: ignore[attr-defined]
    assert producer.records("t.backup") == []


def test_a_notice_delivered_ahead_is_not_sent_again(apply):
    handler, producer, _clock = apply
    restarted(handler, delivered(NOTICE))
    assert handler.decide_batch([record(10, composed())]) == [[]]
    assert producer.sent == []
    assert not handler.parcels.holds(NOTICE)


def test_without_anything_ahead_everything_is_carried_out_and_written_ahead(apply):
    handler, producer, _clock = apply
    restarted(handler)
    # The message: its raw bytes cannot be read here (no broker), which it records
    results = handler.decide_batch([record(10, received(M)), record(11, decided()),
                                    record(12, composed())])
    # Nothing for the loop's transaction: each outcome was written ahead, and folded
    assert results == [[], [], []]
    written = producer.events()
    assert sorted(e.message_id for e in written) == sorted([M, NOTICE])  # type: ignore[attr-defined]
    assert {e.type for e in written if e.message_id == NOTICE} == {  # type: ignore[attr-defined]
        "delivery.deferred"}
    assert handler.parcels.live[NOTICE].attempts == 1


def test_outcomes_of_a_revoked_partition_are_forgotten(apply):
    handler, producer, _clock = apply
    restarted(handler, delivered(NOTICE))
    handler.forget([(MAIL, 0)])
    # A later restore would read them again; without one, the notice is sent as new
    assert handler.decide_batch([record(10, composed())]) == [[]]
    assert [e.message_id for e in producer.events()] == [NOTICE]  # type: ignore[attr-defined]


def test_a_failed_write_ahead_fails_the_batch_instead_of_setting_its_record_aside(apply):
    handler, producer, _clock = apply
    producer.refuse = KafkaError(KafkaError.NOT_ENOUGH_REPLICAS, "not enough replicas")
    with pytest.raises(WriteAheadFailed, match="not enough replicas"):
        handler.decide_batch([record(10, composed())])
