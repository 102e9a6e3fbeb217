"""Every scanner instance's view of `katagate.control`: the connection fold, from offset 0."""

from __future__ import annotations

from katagate.eventlog.folded import FoldedTopic
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.scanner.connection import ConnectionView, evolve
from katagate.schemas import Event


class ControlView:
    def __init__(self, settings: KafkaSettings) -> None:
        self._folded = FoldedTopic(
            settings, TopicNames(settings.topic_prefix).control, ConnectionView(), evolve
        )

    @property
    def view(self) -> ConnectionView:
        return self._folded.value

    @property
    def caught_up(self) -> bool:
        return self._folded.caught_up

    def apply_own(self, events: list[Event]) -> None:
        self._folded.apply_own(events)

    def pump(self, timeout_s: float) -> int:
        return self._folded.pump(timeout_s)

    def close(self) -> None:
        self._folded.close()
