"""The configuration in force, folded from `katagate.control` from offset 0 in a thread.

No consumer group: the control log is small and single-partition, and every ingest instance
needs all of it. New rules and settings apply to messages whose DATA ends after they were read;
no restart needed.
"""

from __future__ import annotations

import logging
import threading
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from eventlog.settings import KafkaSettings
from eventlog.topics import TopicNames
from schemas import ControlState, SchemaError, decode_event, evolve_control

log = logging.getLogger(__name__)


class ControlFollower:
    def __init__(self, kafka: KafkaSettings) -> None:
        self._topic = TopicNames(kafka.topic_prefix).control
        self._consumer = Consumer({
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"ingest-control-{uuid.uuid4().hex}",  # assign() only, never committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "log_level": 3,
        })
        self._consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
        self._state = ControlState()
        self._lock = threading.Lock()
        self.caught_up = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> ControlState:
        with self._lock:
            return self._state

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(stop,), name="ingest-control",
                                        daemon=True)
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.pump(0.2)
        finally:
            self._consumer.close()

    def pump(self, timeout_s: float) -> int:
        """Fold what has arrived; return the number of records read."""
        count = 0
        message = self._consumer.poll(timeout_s)
        while message is not None:
            error = message.error()
            if error is None:
                count += 1
                self._fold(message.value() or b"", message.offset() or 0)
            elif error.code() == KafkaError._PARTITION_EOF:
                self.caught_up.set()
            else:
                log.warning("control log: %s", error)
            message = self._consumer.poll(0)
        return count

    def _fold(self, value: bytes, offset: int) -> None:
        try:
            event = decode_event(value)
        except SchemaError as exc:
            log.warning("control log: skipping offset %d: %s", offset, exc)
            return
        with self._lock:
            self._state = evolve_control(self._state, event)

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)
