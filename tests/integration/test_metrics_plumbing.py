"""The plumbing's metrics on the real broker: records committed per topic, and a consumer's
lag in records and seconds."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY

from katagate.eventlog.clients import new_consumer
from katagate.eventlog.lag import LagMeter
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.topics import TopicNames
from tests.unit.fixtures.events import sample_events

pytestmark = pytest.mark.kafka


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_committed_records_are_counted_per_topic_and_aborted_ones_are_not(kafka_settings):
    topic = TopicNames(kafka_settings.topic_prefix).audit
    before = sample("katagate_events_written_total", topic="audit")
    producer = TransactionalProducer(kafka_settings, f"metrics-{uuid.uuid4().hex}")
    producer.begin()
    producer.produce([Outgoing.event(topic, e) for e in sample_events()[:3]])
    producer.abort("a test")
    producer.begin()
    producer.produce([Outgoing.event(topic, e) for e in sample_events()[:5]])
    producer.commit()
    assert sample("katagate_events_written_total", topic="audit") - before == 5


def test_lag_is_what_is_left_to_read_and_how_old_the_last_record_read_is(kafka_settings):
    # Given 20 records on one partition, of which a consumer has read 5
    topic = TopicNames(kafka_settings.topic_prefix).audit
    producer = TransactionalProducer(kafka_settings, f"metrics-{uuid.uuid4().hex}")
    producer.begin()
    producer.produce([Outgoing(topic, f"r{i}".encode(), b"k") for i in range(20)])
    producer.commit()
    consumer = new_consumer(kafka_settings, {"group.id": uuid.uuid4().hex,
                                             "isolation.level": "read_committed",
                                             "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        meter = LagMeter("lagtest", every_s=0)
        read = []
        while len(read) < 5:
            message = consumer.poll(5)
            assert message is not None
            read.append(message)
        for message in read:
            meter.processed(message.timestamp()[1])
        time.sleep(1.1)
        # When it measures
        meter.measure(consumer)
        # Then 15 are left (the commit marker is not a record) and the last one read is
        # about as old as the wait
        assert sample("katagate_consumer_lag_records", stage="lagtest") in (15, 16)
        assert 1.0 <= sample("katagate_consumer_lag_seconds", stage="lagtest") < 30
        # And once everything is read, there is no lag
        while (message := consumer.poll(1)) is not None:
            meter.processed(message.timestamp()[1])
        meter.measure(consumer)
        assert sample("katagate_consumer_lag_records", stage="lagtest") == 0
        assert sample("katagate_consumer_lag_seconds", stage="lagtest") == 0
    finally:
        consumer.close()
