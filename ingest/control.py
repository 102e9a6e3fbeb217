"""The configuration in force, folded from `katagate.control` from offset 0 in a thread; and the
KATA Quarantine's usage, from the newest records of `katagate.quarantine.usage` (for tempfail).

No consumer group: the control log is small and single-partition, and every ingest instance
needs all of it. New rules and settings apply to messages whose DATA ends after they were read;
no restart needed.
"""

from __future__ import annotations

import threading

from katagate.eventlog.folded import FoldedTopic
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.ingest.unavailable import Usage, evolve_usage
from katagate.schemas import ControlState, evolve_control

# Usage records read back at start. The topic is compacted on one key, so its newest record is
# the usage; the tail only spares reading the records its active segment still holds.
USAGE_TAIL = 1000


class ControlFollower:
    def __init__(self, kafka: KafkaSettings) -> None:
        self._folded = FoldedTopic(kafka, TopicNames(kafka.topic_prefix).control, ControlState(),
                                   evolve_control)
        self.caught_up = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> ControlState:
        return self._folded.value

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(stop,), name="ingest-control",
                                        daemon=True)
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.pump(0.2)
        finally:
            self._folded.close()

    def pump(self, timeout_s: float) -> int:
        """Fold what has arrived; return the number of records read."""
        count = self._folded.pump(timeout_s)
        if self._folded.caught_up:
            self.caught_up.set()
        return count

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)


class QuarantineUsage:
    """The quarantine's usage as the admission last recorded it, followed in a thread."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._folded = FoldedTopic(kafka, TopicNames(kafka.topic_prefix).quarantine_usage, Usage(),
                                   evolve_usage, tail=USAGE_TAIL)

    @property
    def usage(self) -> Usage:
        return self._folded.value

    def start(self, stop: threading.Event) -> threading.Thread:
        def run() -> None:
            try:
                while not stop.is_set():
                    self._folded.pump(0.2)
            finally:
                self._folded.close()

        thread = threading.Thread(target=run, name="ingest-quarantine-usage", daemon=True)
        thread.start()
        return thread
