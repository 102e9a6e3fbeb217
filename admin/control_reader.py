"""The configuration in force, read for an administrator: `katagate.control` folded from offset 0
(read_committed) into a ControlState, the same fold ingest and the decider use."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaException

from katagate.eventlog.clients import new_admin
from katagate.eventlog.errors import KafkaUnavailable, TopicError
from katagate.eventlog.folded import fold_to_end
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import ControlState, Event, evolve_control

S = TypeVar("S")


def read_control(settings: KafkaSettings, timeout_s: float | None = None) -> ControlState:
    """Every committed control event folded, up to the end of the topic as it is now."""
    return read_folded(settings, TopicNames(settings.topic_prefix).control, ControlState(),
                       evolve_control, timeout_s)


def read_folded(settings: KafkaSettings, topic: str, initial: S,
                evolve: Callable[[S, Event], S], timeout_s: float | None = None) -> S:
    """Every committed event of `topic` folded from offset 0, up to its end as it is now (its
    last stable offsets when the read starts)."""
    timeout = timeout_s if timeout_s is not None else settings.request_timeout_s
    try:
        admin = new_admin(settings)
        known = admin.list_topics(topic=topic, timeout=timeout).topics.get(topic)
        # Named with its remedy, rather than as Kafka's 'unknown topic'.
        if known is None or known.error is not None or not known.partitions:
            raise TopicError(f"topic {topic} does not exist: run `katagate topics create`")
        return fold_to_end(settings, topic, initial, evolve, timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"reading {topic}: {exc.args[0]}") from exc
