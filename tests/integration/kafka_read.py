"""Reading a topic to its end, as the tests' witness of what the log holds."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException

from katagate.eventlog.clients import new_reader
from katagate.eventlog.errors import ReadStalled
from katagate.eventlog.read_to_end import read_to_end, watermarks
from katagate.eventlog.records import Consumed
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import ControlState, Event, decode_event, evolve_control


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
    """Every record of every partition up to the end visible at the isolation level asked,
    through the same read to the end as the product's. `bootstrap`: a plaintext cluster's
    address, or the settings of a principal (secure). TimeoutError when no record came for
    `timeout_s` while short of the end."""
    settings = (bootstrap if isinstance(bootstrap, KafkaSettings)
                else KafkaSettings(bootstrap_servers=bootstrap))
    consumer = new_reader(
        settings, "test-reader",
        **{"isolation.level": "read_committed" if committed_only else "read_uncommitted"})
    try:
        places = [(topic, p) for p in _topic_metadata(consumer, topic).partitions]
        # The high watermark; with read_committed, the last stable offset. Retried whatever the
        # error: with a cluster node just killed, the answer may be 'not leader', a timeout, a
        # destroyed handle or 'high watermark not caught up'.
        ends = {place: watermarks(consumer, place, 60.0)[1] for place in places}
        try:
            return [Consumed.from_message(m)
                    for m in read_to_end(consumer, dict.fromkeys(places, 0), ends, timeout_s)]
        except ReadStalled as exc:
            raise TimeoutError(f"reading {topic}: {exc}") from exc
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
