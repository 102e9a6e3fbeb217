"""A following reader's fetches (eventlog/fetching.py) on the real broker:
busy, it fetches once for what came in meanwhile, not once per record; drained, it fetches at
once, and an idle reader still gets a record without waiting. A linger (`lingered`) gathers
what comes in over it with a fetch at its end."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition

from katagate.eventlog import fetching
from katagate.eventlog.clients import new_consumer
from katagate.eventlog.fetching import FETCH_WHEN_DRAINED, lingered
from katagate.eventlog.loop import consumer_config
from katagate.eventlog.topics import TopicNames

pytestmark = pytest.mark.kafka

WRITES = 30
GAP_S = 0.02


class Fetches:
    """Fetch requests the client has sent, from librdkafka's statistics (cumulative)."""

    def __init__(self) -> None:
        self.sent = -1

    def __call__(self, stats: str) -> None:
        brokers = json.loads(stats)["brokers"].values()
        self.sent = sum(b.get("req", {}).get("Fetch", 0) for b in brokers)

    def now(self, consumer: Any) -> tuple[int, int]:
        """The count at the next statistics, served by consume like everything queued; and
        how many records were consumed meanwhile."""
        self.sent, records = -1, 0
        deadline = time.monotonic() + 10
        while self.sent < 0 and time.monotonic() < deadline:
            records += sum(1 for m in consumer.consume(100, 0.05) if m.error() is None)
        assert self.sent >= 0, "no statistics from the client"
        return self.sent, records


def consume_all(consumer: Any, count: int, timeout_s: float = 10.0) -> int:
    got, deadline = 0, time.monotonic() + timeout_s
    while got < count and time.monotonic() < deadline:
        got += sum(1 for m in consumer.consume(min(100, count - got), 0.05)
                   if m.error() is None)
    return got


def started(settings, config: dict[str, Any], partition: int) -> tuple[Any, Producer, Fetches,
                                                                      int]:
    """A reader of an empty `partition` that counts its fetches and has consumed a first
    record (its next fetch waits at the broker); a producer; the fetches sent so far."""
    topic = TopicNames(settings.topic_prefix).mail
    fetches = Fetches()
    consumer = new_consumer(settings, {**config, "statistics.interval.ms": 50,
                                       "stats_cb": fetches})
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 0})
    consumer.assign([TopicPartition(topic, partition, 0)])
    producer.produce(topic, b"first", partition=partition)
    producer.flush(10)
    assert consume_all(consumer, 1) == 1
    before, _ = fetches.now(consumer)
    return consumer, producer, fetches, before


def write_one_by_one(producer: Producer, topic: str, partition: int) -> None:
    for i in range(WRITES):
        producer.produce(topic, b"%d" % i, partition=partition)
        producer.flush(10)
        time.sleep(GAP_S)


def busy_then_drained(settings, config: dict[str, Any], partition: int) -> tuple[int, float]:
    """Fetches sent while the reader did not consume and `WRITES` records came one by one to
    an empty `partition`; then the seconds a record written after the drain took to arrive."""
    topic = TopicNames(settings.topic_prefix).mail
    consumer, producer, fetches, before = started(settings, config, partition)
    try:
        write_one_by_one(producer, topic, partition)  # the reader is busy: it does not consume
        # The statistics queued meanwhile are served with the records fetched; the newest
        # counts up to the end of the writes (within its interval).
        got = sum(1 for m in consumer.consume(1000, 0) if m.error() is None)
        sent = fetches.sent - before
        assert got + consume_all(consumer, WRITES - got) == WRITES
        time.sleep(0.3)  # idle: its fetch waits at the broker
        began = time.monotonic()
        producer.produce(topic, b"after", partition=partition)
        producer.flush(10)
        assert consume_all(consumer, 1) == 1
        return sent, time.monotonic() - began
    finally:
        consumer.close()


def test_a_busy_reader_fetches_once_for_what_came_meanwhile_and_an_idle_one_at_once(
        kafka_settings):
    config = consumer_config(kafka_settings, f"{kafka_settings.topic_prefix}.t-{uuid.uuid4()}")
    assert FETCH_WHEN_DRAINED.items() <= config.items()  # what the stages' loops use

    sent, latency_s = busy_then_drained(kafka_settings, config, 0)
    plain = {k: v for k, v in config.items() if k not in FETCH_WHEN_DRAINED}
    sent_plain, _ = busy_then_drained(kafka_settings, plain, 1)

    # librdkafka's default keeps a fetch outstanding, and the broker answers it per record.
    assert sent_plain >= WRITES / 2, sent_plain
    assert sent <= 4, (sent, sent_plain)
    assert latency_s < 0.2, latency_s


def fetches_over_a_linger(settings, partition: int, gather) -> tuple[int, int, bool]:
    """Fetches sent while `gather(consumer)` ran and records came one by one; how many
    records it gathered; whether the writes had all ended before it returned."""
    topic = TopicNames(settings.topic_prefix).mail
    config = consumer_config(settings, f"{settings.topic_prefix}.t-{uuid.uuid4()}")
    consumer, producer, fetches, before = started(settings, config, partition)
    written: list[float] = []

    def write() -> None:
        write_one_by_one(producer, topic, partition)
        written.append(time.monotonic())

    try:
        writer = threading.Thread(target=write)
        writer.start()
        gathered = sum(1 for m in gather(consumer) if m.error() is None)
        returned = time.monotonic()
        writer.join()
        sent, more = fetches.now(consumer)
        assert gathered + more + consume_all(consumer, WRITES - gathered - more) == WRITES
        return sent - before, gathered, written[0] < returned
    finally:
        consumer.close()


def test_a_linger_gathers_what_came_in_over_it_with_a_fetch_at_its_end(kafka_settings,
                                                                       monkeypatch):
    # The test is about which fetches are made, not how fast a loaded machine answers one.
    monkeypatch.setattr(fetching, "GATHER_FETCH_S", 0.3)
    linger_s = 2.0  # the writes, 30 of them 20 ms apart, end well inside it
    sent, gathered, ended = fetches_over_a_linger(
        kafka_settings, 2, lambda consumer: lingered(consumer, 500, linger_s))
    # Consuming through the linger, as the loop did: the client fetched for each record.
    sent_consuming, consumed, _ = fetches_over_a_linger(
        kafka_settings, 1, lambda consumer: consumer.consume(500, linger_s))

    assert consumed >= 10, consumed
    assert sent_consuming >= consumed / 2, (sent_consuming, consumed)
    assert ended, "the writes outlasted the linger"
    assert sent <= 4, (sent, sent_consuming)
    # The fetch waiting at the linger's start brought the first; the one at its end the rest.
    assert gathered == WRITES, gathered


def test_a_linger_returns_at_once_when_a_full_read_waits_already(kafka_settings):
    """A reader catching up takes full reads without lingering (it lingers only at the tail
    of each fetch's worth)."""
    topic = TopicNames(kafka_settings.topic_prefix).mail
    config = consumer_config(kafka_settings, f"{kafka_settings.topic_prefix}.t-{uuid.uuid4()}")
    consumer = new_consumer(kafka_settings, config)
    producer = Producer({"bootstrap.servers": kafka_settings.bootstrap_servers})
    try:
        for i in range(WRITES):
            producer.produce(topic, b"%d" % i, partition=0)
        producer.flush(10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        assert len(consumer.consume(1, 10)) == 1  # the fetch holding all of them is in
        began = time.monotonic()
        assert len(lingered(consumer, 10, 5.0)) == 10
        assert time.monotonic() - began < 1.0
    finally:
        consumer.close()
