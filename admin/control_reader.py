"""The configuration in force, read for an administrator: `katagate.control` folded from offset 0
(read_committed) into a ControlState, the same fold ingest and the decider use."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaException

from eventlog.clients import new_reader
from eventlog.errors import KafkaUnavailable, TopicError
from eventlog.read_to_end import last_stable_offsets, read_to_end
from eventlog.settings import KafkaSettings
from eventlog.topics import TopicNames
from schemas import ControlState, Event, SchemaError, decode_event, evolve_control

log = logging.getLogger(__name__)
S = TypeVar("S")


def read_control(settings: KafkaSettings, timeout_s: float | None = None) -> ControlState:
    """Every committed control event folded, up to the end of the topic as it is now."""
    return read_folded(settings, TopicNames(settings.topic_prefix).control, ControlState(),
                       evolve_control, timeout_s)


def read_folded(settings: KafkaSettings, topic: str, initial: S,
                evolve: Callable[[S, Event], S], timeout_s: float | None = None) -> S:
    """Every committed event of `topic` folded from offset 0, up to its end as it is now (its
    last stable offsets when the read starts). Records that do not decode are skipped."""
    timeout = timeout_s if timeout_s is not None else settings.request_timeout_s
    try:
        consumer = new_reader(settings, "fold", **{"client.id": f"katagate-fold-{topic}"})
        try:
            known = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            if known is None or known.error is not None or not known.partitions:
                raise TopicError(f"topic {topic} does not exist: run `katagate topics create`")
            places = [(topic, p) for p in sorted(known.partitions)]
            ends = last_stable_offsets(consumer, places, timeout)
            value = initial
            for message in read_to_end(consumer, dict.fromkeys(places, 0), ends, timeout):
                try:
                    event = decode_event(message.value() or b"")
                except SchemaError as exc:
                    log.warning("fold %s: skipping offset %s: %s", topic, message.offset(), exc)
                    continue
                value = evolve(value, event)
            return value
        finally:
            consumer.close()
    except KafkaException as exc:
        raise KafkaUnavailable(f"reading {topic}: {exc.args[0]}") from exc
