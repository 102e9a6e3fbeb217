"""A side input: a small topic (e.g. katagate.control) folded from offset 0 into a value, read
by every instance without a consumer group: followed, with a flag saying when it has caught up
(`FoldedTopic`), or once, up to its end as it is now (`fold_to_end`)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from katagate.eventlog.clients import new_reader
from katagate.eventlog.read_to_end import last_stable_offsets, partitions, read_to_end, watermarks
from katagate.eventlog.settings import KafkaSettings
from katagate.schemas import Event, SchemaError, decode_event

log = logging.getLogger(__name__)
S = TypeVar("S")


def fold_to_end(settings: KafkaSettings, topic: str, initial: S,
                evolve: Callable[[S, Event], S], timeout_s: float) -> S:
    """Every committed event of `topic` folded from offset 0 up to its last stable offsets when
    the read starts. Records that do not decode are skipped (logged)."""
    consumer = new_reader(settings, "fold", **{"client.id": f"katagate-fold-{topic}"})
    try:
        places = [(topic, p) for p in partitions(consumer, topic, timeout_s)]
        ends = last_stable_offsets(consumer, places, timeout_s)
        value = initial
        for message in read_to_end(consumer, dict.fromkeys(places, 0), ends, timeout_s):
            try:
                event = decode_event(message.value() or b"")
            except SchemaError as exc:
                log.warning("fold %s: skipping offset %s: %s", topic, message.offset(), exc)
                continue
            value = evolve(value, event)
        return value
    finally:
        consumer.close()


class FoldedTopic(Generic[S]):
    def __init__(
        self, settings: KafkaSettings, topic: str, initial: S, evolve: Callable[[S, Event], S],
        tail: int | None = None,
    ) -> None:
        """`tail`: fold only the last `tail` records of each partition (and what follows), for
        a value that the newest records alone give (e.g. the quarantine's usage)."""
        # For following. A one-shot fold is `fold_to_end`'s, to ends taken before: being caught
        # up only says each partition met an end once, whenever that was.
        self._evolve = evolve
        self._value = initial
        self._lock = threading.Lock()
        self.caught_up = False
        self._consumer = new_reader(settings, "fold", **{
            "client.id": f"katagate-fold-{topic}", "enable.partition.eof": True})
        partitions = self._consumer.list_topics(topic, timeout=settings.request_timeout_s)
        starts = dict.fromkeys(partitions.topics[topic].partitions, OFFSET_BEGINNING)
        for p in starts if tail is not None else ():
            # Retried: a topic created a moment ago may have no leader yet.
            low, high = watermarks(self._consumer, (topic, p), settings.request_timeout_s)
            starts[p] = max(low, high - (tail or 0))
        self._consumer.assign([TopicPartition(topic, p, at) for p, at in starts.items()])
        self._eof: set[int] = set()
        self._partitions = len(partitions.topics[topic].partitions)
        self._own: set[uuid.UUID] = set()

    def apply_own(self, events: list[Event]) -> None:
        """Fold events this process just committed, before they are read back (once)."""
        with self._lock:
            for event in events:
                self._own.add(event.event_id)
                self._value = self._evolve(self._value, event)

    @property
    def value(self) -> S:
        with self._lock:
            return self._value

    def pump(self, timeout_s: float = 0.0, budget: int = 10_000) -> int:
        count = 0
        message = self._consumer.poll(timeout_s)
        while message is not None and count < budget:
            error = message.error()
            if error is None:
                count += 1
                try:
                    event = decode_event(message.value() or b"")
                except SchemaError as exc:
                    log.warning("fold %s: skipping offset %s: %s", message.topic(),
                                message.offset(), exc)
                else:
                    with self._lock:
                        if event.event_id in self._own:
                            self._own.discard(event.event_id)
                        else:
                            self._value = self._evolve(self._value, event)
            elif error.code() == KafkaError._PARTITION_EOF:
                self._eof.add(message.partition() or 0)
                self.caught_up = len(self._eof) >= self._partitions
            else:
                log.warning("fold: %s", error)
            message = self._consumer.poll(0)
        return count

    def wait_caught_up(self, timeout_s: float) -> bool:
        import time

        deadline = time.monotonic() + timeout_s
        while not self.caught_up and time.monotonic() < deadline:
            self.pump(0.1)
        return self.caught_up

    def close(self) -> None:
        self._consumer.close()
