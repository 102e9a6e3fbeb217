"""How far behind the log a consumer is, in records and in seconds, as Prometheus gauges.

Records: the sum over the assigned partitions of (end - position), the end being the high
watermark the last fetch brought (no extra request). Seconds: how old the last record
processed was, while there is more to read; 0 once caught up. Measured at most once a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException

from katagate.eventlog.metrics import CONSUMER_LAG_RECORDS, CONSUMER_LAG_SECONDS

log = logging.getLogger(__name__)


class LagMeter:
    def __init__(self, stage: str, clock: Callable[[], float] = time.time,
                 every_s: float = 1.0) -> None:
        self.stage = stage
        self._clock = clock
        self._every = every_s
        self._next = 0.0
        self._last_ms = 0  # timestamp of the newest record processed

    def processed(self, timestamp_ms: int) -> None:
        if timestamp_ms > self._last_ms:
            self._last_ms = timestamp_ms

    def measure(self, consumer: Any) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._every
        try:
            assigned = consumer.assignment()
            positions = consumer.position(assigned) if assigned else []
            behind = 0
            for tp in positions:
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    behind += max(0, high - tp.offset)
        except KafkaException as exc:  # informative only: never stop the stage for it
            log.debug("%s: lag unavailable: %s", self.stage, exc)
            return
        CONSUMER_LAG_RECORDS.labels(self.stage).set(behind)
        age = max(0.0, now - self._last_ms / 1000) if behind and self._last_ms else 0.0
        CONSUMER_LAG_SECONDS.labels(self.stage).set(age)
