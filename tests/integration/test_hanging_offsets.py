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

from eventlog.hanging import CommittedOffsets, OffsetsHanging, stable_committed
from eventlog.metrics import HANGING_OFFSET_COMMITS
from eventlog.producer import ProducerWedged, TransactionalProducer
from eventlog.topics import TopicNames

pytestmark = pytest.mark.kafka


def group_consumer(settings, group_id: str) -> Consumer:
    return Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group_id,
                     "isolation.level": "read_committed", "enable.auto.commit": False,
                     "log_level": 3})


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


def test_a_transaction_in_flight_is_waited_for_and_the_stable_offsets_read_beside(
        make_kafka_settings) -> None:
    # Kafka's own calls get the usual timeout (a fresh broker loads its coordinators slowly);
    # the offset reads under test get a short one.
    settings = make_kafka_settings()
    short = settings.model_copy(update={"request_timeout_s": 2.0})
    group = f"hang-{uuid.uuid4().hex[:8]}"
    mail = TopicNames(settings.topic_prefix).mail
    commit_offset(settings, group, TopicPartition(mail, 0, 5), "test-hang-first")

    # Another instance's transaction, open: its offset (9) is pending.
    other = TransactionalProducer(settings, "test-hang-other")
    holder = group_consumer(settings, group)
    other.begin()
    other.send_offsets([TopicPartition(mail, 0, 9)], holder.consumer_group_metadata())

    assert [tp.offset for tp in stable_committed(settings, group, [TopicPartition(mail, 0)])] \
        == [5]
    ours = TransactionalProducer(settings, "test-hang-ours")
    reader = group_consumer(settings, group)
    offsets = CommittedOffsets(short, stage="test", group_id=group, producer=ours,
                               consumer=reader, hanging_after=60)
    ends = threading.Timer(3.0, other.commit)  # the other instance finishes meanwhile
    ends.start()
    began = time.monotonic()
    try:
        read = offsets.read([TopicPartition(mail, 0)], reader.consumer_group_metadata)
    finally:
        ends.join()
        for closing in (other, ours):
            closing.close()
        holder.close()
        reader.close()
    assert [tp.offset for tp in read] == [9]
    assert time.monotonic() - began >= 2.5  # it did wait for the transaction to end


def test_a_commit_left_hanging_by_another_transactional_id_is_named_not_spun_on(
        make_kafka_settings) -> None:
    settings = make_kafka_settings(transaction_timeout_ms=120_000)
    short = settings.model_copy(update={"request_timeout_s": 1.0})
    group = f"hang-{uuid.uuid4().hex[:8]}"
    mail = TopicNames(settings.topic_prefix).mail
    commit_offset(settings, group, TopicPartition(mail, 1, 7), "test-hang2-first")
    other = TransactionalProducer(settings, "test-hang2-other")
    holder = group_consumer(settings, group)
    other.begin()
    other.send_offsets([TopicPartition(mail, 1, 11)], holder.consumer_group_metadata())

    ours = TransactionalProducer(settings, "test-hang2-ours")
    reader = group_consumer(settings, group)
    offsets = CommittedOffsets(short, stage="test", group_id=group, producer=ours,
                               consumer=reader, hanging_after=1.0)
    before = HANGING_OFFSET_COMMITS.labels("test")._value.get()
    try:
        with pytest.raises(OffsetsHanging, match="another transactional id holds them"):
            offsets.read([TopicPartition(mail, 1)], reader.consumer_group_metadata)
        # It committed the stable offset under its own id once, and changed nothing else.
        assert HANGING_OFFSET_COMMITS.labels("test")._value.get() == before + 1
        assert [tp.offset for tp in stable_committed(settings, group,
                                                     [TopicPartition(mail, 1)])] == [7]
        other.commit()  # the other instance ends its transaction: the offsets are stable
        read = offsets.read([TopicPartition(mail, 1)], reader.consumer_group_metadata)
        # Kafka keeps the commit written last, which is ours (7), not the one pending since
        # before it (11). Which is why a commit is only taken as hanging once it is older
        # than any transaction may live: a live one has ended or been aborted by then.
        assert [tp.offset for tp in read] == [7]
    finally:
        for closing in (other, ours):
            closing.close()
        holder.close()
        reader.close()
