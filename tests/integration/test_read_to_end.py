"""eventlog.read_to_end on the real broker: committed records only, up to the last stable offsets
taken before the read, across transaction markers, aborted transactions, an open transaction
and an empty partition; records committed after the ends wait for the next read. And the
one-shot fold built on it (eventlog.folded.fold_to_end)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from katagate.eventlog.clients import new_admin, new_producer, new_reader
from katagate.eventlog.errors import ReadStalled
from katagate.eventlog.folded import fold_to_end
from katagate.eventlog.producer import TransactionalProducer, producer_config
from katagate.eventlog.read_to_end import Place, last_stable_offsets, partitions, read_to_end
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from tests.integration.kata_harness import wait_for
from tests.unit.test_projector_flows import control_flow

pytestmark = pytest.mark.kafka


def new_topic(settings: KafkaSettings, count: int) -> str:
    topic = f"{settings.topic_prefix}.read-to-end-{uuid.uuid4().hex[:6]}"
    admin = new_admin(settings)  # held until the answer: a dropped handle cancels the request
    admin.create_topics([NewTopic(topic, count, 1)])[topic].result(30)
    return topic


def transactional(settings: KafkaSettings) -> Producer:
    producer = new_producer(settings, producer_config(settings, f"test-{uuid.uuid4().hex}"))
    producer.init_transactions(30)
    return producer


def transaction(producer: Producer, topic: str, records: list[tuple[int, bytes]],
                outcome: str | None) -> None:
    """`records` as (partition, value) in one transaction, then commit, abort or (None) leave
    it open with its records in the log."""
    producer.begin_transaction()
    for partition, value in records:
        producer.produce(topic, value, b"k", partition=partition)
    producer.flush(30)
    if outcome == "commit":
        producer.commit_transaction(30)
    elif outcome == "abort":
        producer.abort_transaction(30)


def by_partition(messages: list[Any]) -> dict[int, list[tuple[int, bytes]]]:
    found: dict[int, list[tuple[int, bytes]]] = {}
    for m in messages:
        found.setdefault(m.partition(), []).append((m.offset(), m.value()))
    return found


def settled_ends(settings: KafkaSettings, places: list[Place],
                 expected: dict[Place, int]) -> None:
    """A commit returns before its markers are written: wait until readers see them."""
    probe = new_reader(settings, "test-probe")
    try:
        wait_for(lambda: last_stable_offsets(probe, places, 10) == expected, 30,
                 f"last stable offsets {expected}")
    finally:
        probe.close()


@pytest.mark.parametrize("partition_eof", [True, False])
def test_reads_committed_records_up_to_the_ends_taken_before_and_no_further(
        kafka_settings: KafkaSettings, partition_eof: bool) -> None:
    # Given four partitions: 0 with an aborted transaction between two committed ones, 1 whose
    # committed record is followed by an aborted one (only markers and aborted data before its
    # end), 2 empty, and 3 with a committed record and then a transaction left open
    topic = new_topic(kafka_settings, 4)
    places = [(topic, p) for p in range(4)]
    first, second = transactional(kafka_settings), transactional(kafka_settings)
    transaction(first, topic, [(0, b"a0"), (0, b"a1"), (1, b"b0"), (3, b"d0")], "commit")
    transaction(first, topic, [(0, b"x0"), (0, b"x1"), (1, b"y0")], "abort")
    transaction(first, topic, [(0, b"a2")], "commit")
    # (each transaction ends with one marker per partition it wrote: an offset of its own)
    settled_ends(kafka_settings, places, {places[0]: 8, places[1]: 4, places[2]: 0,
                                          places[3]: 2})
    transaction(second, topic, [(3, b"open")], None)
    uncommitted = new_reader(kafka_settings, "test-uncommitted",
                             **{"isolation.level": "read_uncommitted"})
    _low, high = uncommitted.get_watermark_offsets(TopicPartition(topic, 3), 10, cached=False)
    assert high == 3  # the open record is in the log
    uncommitted.close()

    reader = new_reader(kafka_settings, "test", **{"enable.partition.eof": partition_eof,
                                                   "auto.offset.reset": "earliest"})
    try:
        assert partitions(reader, topic, 10) == [0, 1, 2, 3]
        ends = last_stable_offsets(reader, places, 10)
        # The open transaction holds partition 3's end before its record
        assert ends == {places[0]: 8, places[1]: 4, places[2]: 0, places[3]: 2}

        # And records are committed after the ends were taken, and visible
        second.commit_transaction(30)
        transaction(first, topic, [(0, b"late"), (2, b"late-2")], "commit")
        settled_ends(kafka_settings, places, {places[0]: 10, places[1]: 4, places[2]: 2,
                                              places[3]: 4})

        # When the partitions are read to those ends
        began = time.monotonic()
        read = by_partition(list(read_to_end(reader, dict.fromkeys(places, 0), ends, 10)))
        # Then every committed record before them, none aborted, none after, and at once
        # (partition 1 is done when its position passes the markers, not by waiting)
        assert read == {0: [(0, b"a0"), (1, b"a1"), (6, b"a2")], 1: [(0, b"b0")],
                        3: [(0, b"d0")]}
        assert time.monotonic() - began < 5

        # And the next read, from those ends, finds what was committed since
        later = last_stable_offsets(reader, places, 10)
        read = by_partition(list(read_to_end(reader, ends, later, 10)))
        assert read == {0: [(8, b"late")], 2: [(0, b"late-2")], 3: [(2, b"open")]}
        # (an end reached is a read of nothing)
        assert list(read_to_end(reader, later, later, 10)) == []
    finally:
        reader.close()
        first.flush(10)
        second.flush(10)


def test_an_end_that_cannot_be_reached_stalls_after_the_deadline(
        kafka_settings: KafkaSettings) -> None:
    # Given a partition with a committed record and then a transaction left open
    topic = new_topic(kafka_settings, 1)
    place = (topic, 0)
    producer, holder = transactional(kafka_settings), transactional(kafka_settings)
    transaction(producer, topic, [(0, b"committed")], "commit")
    settled_ends(kafka_settings, [place], {place: 2})
    transaction(holder, topic, [(0, b"open")], None)
    reader = new_reader(kafka_settings, "test", **{"enable.partition.eof": True})
    try:
        # When it is read to an end past the last stable offset (the open record's next)
        reading = read_to_end(reader, {place: 0}, {place: 3}, 1.0)
        began = time.monotonic()
        read = [next(reading).value()]
        with pytest.raises(ReadStalled, match=r"reading stalled"):
            next(reading)
        # Then it yields what it can, and gives up a deadline after the last record
        assert read == [b"committed"]
        assert 1.0 <= time.monotonic() - began < 10
    finally:
        reader.close()
        holder.abort_transaction(30)


def test_a_one_shot_fold_folds_the_committed_events_and_skips_what_does_not_decode(
        kafka_settings: KafkaSettings) -> None:
    # Given control events committed around a record that is no event, then one left open
    topic = TopicNames(kafka_settings.topic_prefix).control
    events = [e for _t, e in control_flow()]
    writer = TransactionalProducer(kafka_settings, f"test-fold-{uuid.uuid4().hex[:8]}")
    holder = TransactionalProducer(kafka_settings, f"test-fold-{uuid.uuid4().hex[:8]}")
    writer.begin()
    writer.produce([Outgoing.event(topic, events[0]), Outgoing(topic, b"not an event", b"k"),
                    *(Outgoing.event(topic, e) for e in events[1:-1])])
    writer.commit()
    settled_ends(kafka_settings, [(topic, 0)], {(topic, 0): len(events) + 1})
    holder.begin()
    holder.produce([Outgoing.event(topic, events[-1])])
    holder.flush()
    try:
        # When the topic is folded once
        folded = fold_to_end(kafka_settings, topic, [], lambda seen, e: [*seen, e.event_id], 10)
        # Then every committed event in order, the undecodable record skipped, the open one not
        assert folded == [e.event_id for e in events[:-1]]
    finally:
        holder.abort("the test is over")
        holder.close()
        writer.close()
