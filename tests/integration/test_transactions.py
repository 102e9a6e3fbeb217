"""Given the real broker, a committed transaction is visible to read_committed readers and an
aborted one is not (while it did reach the log)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException

from katagate.eventlog.producer import ProducerFenced, TransactionalProducer, is_fenced
from katagate.eventlog.records import Outgoing
from katagate.eventlog.topics import TopicNames
from tests.integration.kafka_read import read_all

pytestmark = pytest.mark.kafka


def test_committed_is_visible_and_aborted_is_not(kafka_settings):
    topic = TopicNames(kafka_settings.topic_prefix).control
    producer = TransactionalProducer(kafka_settings, "test-txn-visibility")

    producer.begin()
    producer.produce([Outgoing(topic, b"committed-1", b"k"), Outgoing(topic, b"committed-2", b"k")])
    producer.commit()

    producer.begin()
    producer.produce([Outgoing(topic, b"aborted-1", b"k")])
    producer.flush()  # the record is in the log, only its transaction is undecided
    producer.abort(reason="the test aborts")

    producer.begin()
    producer.produce([Outgoing(topic, b"committed-3", b"k")])
    producer.commit()
    producer.close()

    committed = [r.value for r in read_all(kafka_settings, topic)]
    everything = [
        r.value
        for r in read_all(kafka_settings, topic, committed_only=False)
    ]
    assert committed == [b"committed-1", b"committed-2", b"committed-3"]
    assert everything == [b"committed-1", b"committed-2", b"aborted-1", b"committed-3"]


def test_a_second_producer_with_the_same_id_fences_the_first(kafka_settings):
    topic = TopicNames(kafka_settings.topic_prefix).control
    first = TransactionalProducer(kafka_settings, "test-txn-fence")
    first.begin()
    first.produce([Outgoing(topic, b"from-the-zombie", b"k")])
    first.flush()

    # The restarted instance: init_transactions aborts what the first one left open.
    second = TransactionalProducer(kafka_settings, "test-txn-fence")
    second.begin()
    second.produce([Outgoing(topic, b"from-the-successor", b"k")])
    second.commit()

    first.produce([Outgoing(topic, b"late", b"k")])
    with pytest.raises(ProducerFenced):
        first.commit()

    committed = [r.value for r in read_all(kafka_settings, topic)]
    assert committed == [b"from-the-successor"]


def test_a_fenced_producer_waiting_for_offsets_gets_a_named_kafka_error(kafka_settings):
    # Given a producer fenced by its successor after it began a transaction
    topic = TopicNames(kafka_settings.topic_prefix).control
    first = TransactionalProducer(kafka_settings, "test-txn-fence-located")
    first.begin()
    second = TransactionalProducer(kafka_settings, "test-txn-fence-located")
    second.begin()
    second.produce([Outgoing(topic, b"from-the-successor", b"k")])
    second.commit()
    # When it produces and waits for the offsets
    # Then the error says it was fenced (never a bare SystemError from the client)
    with pytest.raises(KafkaException) as caught:
        first.produce_located([Outgoing(topic, b"late", b"k")])
    assert is_fenced(caught.value.args[0])
    committed = [r.value for r in read_all(kafka_settings, topic)]
    assert committed == [b"from-the-successor"]
