"""Reading a topic to its end, as the tests' witness of what the log holds."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eventlog.clients import new_reader
from eventlog.read_to_end import watermarks
from eventlog.records import Consumed
from eventlog.settings import KafkaSettings
from eventlog.topics import TopicNames
from schemas import ControlState, Event, decode_event, evolve_control


def _topic_metadata(consumer: Consumer, topic: str) -> Any:
    """Retried whatever the error: with a cluster node just killed, the first broker asked
    may be the dead one (a transport error, or a timeout, as CI met)."""
    for attempt in range(10):
        try:
            return consumer.list_topics(topic, timeout=10).topics[topic]
        except KafkaException:
            if attempt == 9:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def read_all(
    bootstrap: str | KafkaSettings, topic: str, *, committed_only: bool = True,
    timeout_s: float = 30.0,
) -> list[Consumed]:
    """Every record of every partition up to the end visible at the isolation level asked.
    `bootstrap`: a plaintext cluster's address, or the settings of a principal (secure)."""
    settings = (bootstrap if isinstance(bootstrap, KafkaSettings)
                else KafkaSettings(bootstrap_servers=bootstrap))
    consumer = new_reader(
        settings, "test-reader",
        **{"isolation.level": "read_committed" if committed_only else "read_uncommitted"})
    try:
        metadata = _topic_metadata(consumer, topic)
        partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
        # With read_committed the high watermark is the last stable offset.
        ends = {}
        for tp in partitions:
            # Retried whatever the error: with a cluster node just killed, the answer may be
            # 'not leader', a timeout, a destroyed handle or 'high watermark not caught up'.
            ends[tp.partition] = watermarks(consumer, (topic, tp.partition), 60.0)[1]
        consumer.assign(partitions)
        records: list[Consumed] = []
        positions = {p: 0 for p in ends}
        deadline = time.monotonic() + timeout_s
        while any(positions[p] < ends[p] for p in ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: at {positions}, end {ends}")
            for message in consumer.consume(500, 0.5):
                if message.error():
                    continue
                records.append(Consumed.from_message(message))
                positions[message.partition()] = message.offset() + 1
            # Transaction markers occupy offsets too: ask where the consumer really is.
            for tp in consumer.position(partitions):
                if tp.offset >= 0:
                    positions[tp.partition] = max(positions[tp.partition], tp.offset)
        return records
    finally:
        consumer.close()


def control_events(kafka: KafkaSettings) -> list[Event]:
    """Every event of the control topic, in order."""
    topic = TopicNames(kafka.topic_prefix).control
    return [decode_event(r.value or b"") for r in read_all(kafka, topic)]


def refold(kafka: KafkaSettings) -> ControlState:
    """The settings and rules folded from the control topic alone."""
    state = ControlState()
    for event in control_events(kafka):
        state = evolve_control(state, event)
    return state
