"""Reading committed records to the end of the log as it stands now (the last stable offset).

Manual assignment, no consumer group, nothing committed: the audit never moves anyone's offsets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from audit.chain import LogRecord
from eventlog.clients import new_reader
from eventlog.errors import KafkaUnavailable
from eventlog.settings import KafkaSettings
from eventlog.topics import TopicNames

# The audited topics, relative to the namespace: the event logs that are kept forever.
AUDITED = ("mail", "quarantine", "control")

Place = tuple[str, int]  # (topic, partition)


def audited_topics(prefix: str) -> dict[str, str]:
    """Relative name → topic name, e.g. {"mail": "katagate.mail", ...}."""
    names = TopicNames(prefix)
    return {"mail": names.mail, "quarantine": names.quarantine, "control": names.control}


def new_consumer(kafka: KafkaSettings) -> Consumer:
    return new_reader(kafka, "audit", **{"auto.offset.reset": "earliest",
                                         "enable.partition.eof": True})


def partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise KafkaUnavailable(f"topic {topic} is not available")
    return sorted(metadata.partitions)


def watermarks(consumer: Consumer, place: Place, timeout_s: float) -> tuple[int, int]:
    """(low, last stable offset), retried: right after topic creation or under load the broker
    may answer 'not leader' for a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(*place), timeout=timeout_s, cached=False)
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"watermarks of {place[0]}[{place[1]}]: {exc}") from exc
            time.sleep(0.2)


def from_message(message: Any) -> LogRecord:
    """A consumed message as the audit sees it (null header values stay null)."""
    return LogRecord(
        topic=message.topic(), partition=message.partition(), offset=message.offset(),
        key=message.key(), value=message.value(), headers=tuple(message.headers() or ()),
    )


def read_to_end(
    consumer: Consumer, starts: Mapping[Place, int], ends: Mapping[Place, int], timeout_s: float
) -> Iterator[LogRecord]:
    """Every committed record from `starts` up to `ends` (exclusive), in offset order within a
    partition. `ends` are last stable offsets taken before: records committed later wait for the
    next read."""
    todo = {place: start for place, start in starts.items() if start < ends[place]}
    if not todo:
        return
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in todo.items()])
    deadline = time.monotonic() + timeout_s
    try:
        while todo:
            messages: list[Any] = consumer.consume(1000, 0.2)
            if not messages and time.monotonic() > deadline:
                raise KafkaUnavailable(f"reading stalled at {todo} (ends {dict(ends)})")
            for message in messages:
                place = (message.topic(), message.partition())
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if place in todo and message.offset() >= ends[place]:
                            del todo[place]
                        continue
                    raise KafkaUnavailable(f"reading {place}: {error}")
                if place not in todo or message.offset() >= ends[place]:
                    continue
                deadline = time.monotonic() + timeout_s
                yield from_message(message)
                if message.offset() + 1 >= ends[place]:
                    del todo[place]
            # Transaction markers occupy offsets: the consumer's position says where it is.
            for tp in consumer.position([TopicPartition(*place) for place in todo]):
                place = (tp.topic, tp.partition)
                if place in todo and tp.offset >= ends[place]:
                    del todo[place]
    finally:
        consumer.unassign()
