"""Every projection together: one `apply` for all, one canonical rendering, one state format.

The views are functions of the set of events read (per-partition order aside), so a live
projector and a replay that have read the same records render the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from projector import connection, counters, quarantine, timelines
from projector.canonical import document
from projector.connection import ConnectionView
from projector.counters import Counters
from projector.quarantine import QuarantineView
from projector.timelines import MemoryTimelines
from schemas import Event, MailEvent

STATE_FORMAT = 1
VIEW_NAMES = ("connection", "quarantine", "counters")


@dataclass
class Projections:
    connection: ConnectionView = field(default_factory=ConnectionView)
    quarantine: QuarantineView = field(default_factory=QuarantineView)
    counters: Counters = field(default_factory=Counters)
    timelines: MemoryTimelines = field(default_factory=MemoryTimelines)
    _summaries: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def to_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "connection": self.connection.to_state(),
            "quarantine": self.quarantine.to_state(),
            "counters": self.counters.to_state(),
            "timelines": self.timelines.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Projections:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown projection state format {state.get('format')!r}")
        return cls(
            connection=ConnectionView.from_state(state["connection"]),
            quarantine=QuarantineView.from_state(state["quarantine"]),
            counters=Counters.from_state(state["counters"]),
            timelines=MemoryTimelines.from_state(state["timelines"]),
        )

    # -- reading -------------------------------------------------------------------

    def view(self, name: str) -> dict[str, Any]:
        if name == "connection":
            return connection.render(self.connection)
        if name == "quarantine":
            return quarantine.render(self.quarantine)
        if name == "counters":
            return counters.render(self.counters)
        raise KeyError(name)

    def document(self, name: str) -> bytes:
        """A view as served and written: canonical JSON and a newline."""
        return document(self.view(name))

    def message(self, message_id: str) -> dict[str, Any] | None:
        return timelines.render(self.timelines, message_id)

    def summary(self, message_id: str) -> dict[str, Any] | None:
        cached = self._summaries.get(message_id)
        if cached is None:
            events = self.timelines.events(message_id)
            if events is None:
                return None
            cached = self._summaries[message_id] = timelines.summary(message_id, events)
        return cached

    def message_ids(self, after: str | None = None) -> Iterator[str]:
        return self.timelines.message_ids(after)


def apply(views: Projections, event: Event) -> Projections:
    """Fold one event into every projection (in place; returns the same object)."""
    views.connection = connection.apply(views.connection, event)
    quarantine.apply(views.quarantine, event)
    counters.apply(views.counters, event)
    if isinstance(event, MailEvent):
        timelines.apply(views.timelines, event)
        views._summaries.pop(event.message_id, None)
    return views
