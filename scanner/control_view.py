"""Every scanner instance's view of `katagate.control`, folded from offset 0.

No consumer group: each instance reads the whole (small, single-partition) control log and
knows when it has caught up, so it never acts on a stale view after a restart.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from eventlog.settings import KafkaSettings
from eventlog.topics import TopicNames
from scanner.connection import ConnectionView, evolve
from schemas import Event, SchemaError, decode_event

log = logging.getLogger(__name__)


class ControlView:
    def __init__(self, settings: KafkaSettings) -> None:
        self._topic = TopicNames(settings.topic_prefix).control
        self._consumer = Consumer({
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"control-view-{uuid.uuid4().hex}",  # never committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "log_level": 3,
        })
        self._consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
        self._view = ConnectionView()
        self._lock = threading.Lock()
        self._applied: set[uuid.UUID] = set()
        self.caught_up = False
        self.listeners: list[Callable[[Event], None]] = []

    @property
    def view(self) -> ConnectionView:
        with self._lock:
            return self._view

    def apply_own(self, events: list[Event]) -> None:
        """Fold events this instance just committed, before they are read back."""
        with self._lock:
            for event in events:
                self._applied.add(event.event_id)
                self._view = evolve(self._view, event)

    def pump(self, timeout_s: float) -> int:
        """Fold what has arrived; return the number of events read."""
        count = 0
        message = self._consumer.poll(timeout_s)
        while message is not None:
            error = message.error()
            if error is None:
                count += 1
                self._fold(message.value() or b"", message.offset() or 0)
            elif error.code() == KafkaError._PARTITION_EOF:
                self.caught_up = True
            else:
                log.warning("control view: %s", error)
            message = self._consumer.poll(0)
        return count

    def _fold(self, value: bytes, offset: int) -> None:
        try:
            event = decode_event(value)
        except SchemaError as exc:
            log.warning("control view: skipping offset %d: %s", offset, exc)
            return
        with self._lock:
            if event.event_id in self._applied:
                self._applied.discard(event.event_id)
                return
            self._view = evolve(self._view, event)
        for listener in self.listeners:
            listener(event)

    def close(self) -> None:
        self._consumer.close()
