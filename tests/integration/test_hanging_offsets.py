"""Committed offsets held unstable by a transaction, on the real broker: a stage waits while a
transaction may still end, reads the last stable offsets beside, and does not spin for ever on
a commit another transactional id leaves hanging.

(The case the module exists for, a commit hanging under the stage's own transactional id after
Kafka lost its markers, needs the broker crash of tests/faults/test_broker_faults.py: no client
can make the coordinator forget a transaction it has not finished.)"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from katagate.eventlog.clients import new_consumer
from katagate.eventlog.metrics import HANGING_OFFSET_COMMITS
from katagate.eventlog.producer import ProducerWedged, TransactionalProducer
from katagate.eventlog.stuck_offsets import CommittedOffsets, OffsetsHanging, stable_committed
from katagate.eventlog.topics import TopicNames

pytestmark = pytest.mark.kafka


def group_consumer(settings, group_id: str) -> Consumer:
    return new_consumer(settings, {"group.id": group_id, "isolation.level": "read_committed",
                                   "enable.auto.commit": False})


def commit_offset(settings, group_id: str, tp: TopicPartition, transactional_id: str) -> None:
    # On a broker that has never held a group, the first offsets sent can wedge librdkafka
    # while the coordinator appears (see eventlog/producer.py): then again, as a stage would.
    for attempt in range(3):
        producer = TransactionalProducer(settings, transactional_id)
        consumer = group_consumer(settings, group_id)
        try:
            producer.begin()
            producer.send_offsets([tp], consumer.consumer_group_metadata())
            producer.commit()
            return
        except ProducerWedged:
            if attempt == 2:
                raise
        finally:
            producer.close()
            consumer.close()


class Scene:
    """A group with a stable offset, another instance's transaction holding a newer one
    pending, and a stage's own producer and consumer, with offset reads on a short timeout
    (Kafka's own calls keep the usual one: a fresh broker loads its coordinators slowly)."""

    def __init__(self, settings, tp: TopicPartition, stable: int, pending: int, *,
                 short_timeout_s: float, hanging_after: float) -> None:
        self.group = f"hang-{uuid.uuid4().hex[:8]}"
        self.tp = tp
        tag = uuid.uuid4().hex[:6]
        # The stable commit carries a restore point, as the stages' commits do.
        commit_offset(settings, self.group,
                      TopicPartition(tp.topic, tp.partition, stable, "restore-from:3"),
                      f"test-hang-{tag}-first")
        self.other = TransactionalProducer(settings, f"test-hang-{tag}-other")
        self.holder = group_consumer(settings, self.group)
        self.other.begin()
        self.other.send_offsets([TopicPartition(tp.topic, tp.partition, pending)],
                                self.holder.consumer_group_metadata())
        self.ours = TransactionalProducer(settings, f"test-hang-{tag}-ours")
        self.reader = group_consumer(settings, self.group)
        short = settings.model_copy(update={"request_timeout_s": short_timeout_s})
        self.offsets = CommittedOffsets(short, stage="test", group_id=self.group,
                                        producer=self.ours, consumer=self.reader,
                                        hanging_after=hanging_after)

    def read(self) -> list[int]:
        return [tp.offset for tp in self.offsets.read(
            [TopicPartition(self.tp.topic, self.tp.partition)])]

    def close(self) -> None:
        for producer in (self.other, self.ours):
            producer.close()
        self.holder.close()
        self.reader.close()


def test_a_transaction_in_flight_is_waited_for_and_the_stable_offsets_read_beside(
        make_kafka_settings) -> None:
    settings = make_kafka_settings()
    mail = TopicNames(settings.topic_prefix).mail
    scene = Scene(settings, TopicPartition(mail, 0), stable=5, pending=9,
                  short_timeout_s=2.0, hanging_after=60)
    assert [tp.offset for tp in stable_committed(settings, scene.group,
                                                 [TopicPartition(mail, 0)])] == [5]
    ends = threading.Timer(3.0, scene.other.commit)  # the other instance finishes meanwhile
    ends.start()
    began = time.monotonic()
    try:
        read = scene.read()
    finally:
        ends.join()
        scene.close()
    assert read == [9]
    assert time.monotonic() - began >= 2.5  # it did wait for the transaction to end


def test_a_commit_left_hanging_by_another_transactional_id_is_named_not_spun_on(
        make_kafka_settings) -> None:
    settings = make_kafka_settings(transaction_timeout_ms=120_000)
    mail = TopicNames(settings.topic_prefix).mail
    scene = Scene(settings, TopicPartition(mail, 1), stable=7, pending=11,
                  short_timeout_s=1.0, hanging_after=1.0)
    before = HANGING_OFFSET_COMMITS.labels("test")._value.get()
    try:
        with pytest.raises(OffsetsHanging, match="another transactional id holds them"):
            scene.read()
        # It committed the stable offset, with its restore point, under its own id once, and
        # changed nothing else.
        assert HANGING_OFFSET_COMMITS.labels("test")._value.get() == before + 1
        assert [(tp.offset, tp.metadata) for tp in stable_committed(
            settings, scene.group, [TopicPartition(mail, 1)])] == [(7, "restore-from:3")]
        scene.other.commit()  # the other instance ends its transaction: the offsets are stable
        # Kafka keeps the commit written last, which is ours (7), not the one pending since
        # before it (11). Which is why a commit is only taken as hanging once it is older
        # than any transaction may live: a live one has ended or been aborted by then.
        assert scene.read() == [7]
    finally:
        scene.close()
