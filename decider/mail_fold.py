"""The shell both stateful decider handlers share: a per-partition fold of `katagate.mail`
(`Messages` for decisions, `Parcels` for apply), restored from the log, bounded by restore
points, with the handler's own outputs folded ahead of the committed offset."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import ClassVar, Protocol

from katagate.eventlog.decoded import decoded, remember
from katagate.eventlog.handler import Handler, Poison
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.restore_points import RestorePoints
from katagate.schemas import Event, MessageReceived, NotificationComposed, SchemaError


class MailState(Protocol):
    def evolve(self, event: Event, partition: int) -> None: ...

    def holds(self, message_id: str) -> bool: ...

    def forget(self, partitions: set[int]) -> None: ...


class MailFold(Handler):
    stateful = True
    folds_own_outputs = True
    # What the handler writes itself: after the committed offset only these are folded.
    own_outputs: ClassVar[tuple[type[Event], ...]] = ()

    def __init__(self, state: MailState, mail_topic: str) -> None:
        self.state = state
        self._mail = mail_topic
        self._points = RestorePoints()

    def read(self, record: Consumed) -> Event:
        try:
            return decoded(record.value or b"")
        except SchemaError as exc:
            raise Poison(str(exc)) from exc

    def fold(self, event: Event, record: Consumed) -> None:
        self.state.evolve(event, record.partition)
        # A notice begins an entry too: apply carries it until its terminal event.
        if isinstance(event, MessageReceived | NotificationComposed):
            self._points.began(record.partition, event.message_id, record.offset)

    def emit(self, events: Sequence[Event], partition: int) -> list[Outgoing]:
        """The handler's outputs, folded into its state as they are written."""
        self.fold_written(events, partition)
        return self.records(events)

    def fold_written(self, events: Sequence[Event], partition: int) -> None:
        """Outputs the handler wrote itself (and saw acknowledged), into its state."""
        for event in events:
            self.state.evolve(event, partition)

    def records(self, events: Sequence[Event]) -> list[Outgoing]:
        out = [Outgoing.event(self._mail, e) for e in events]
        for record, event in zip(out, events, strict=True):
            remember(record.value, event)  # the decider's other parts read it back
        return out

    def restore(self, record: Consumed) -> None:
        with contextlib.suppress(Poison):  # dead-lettered when it was first read
            self.fold(self.read(record), record)

    def restore_ahead(self, record: Consumed) -> None:
        try:
            event = self.read(record)
        except Poison:
            return
        if isinstance(event, self.own_outputs):
            self.fold_ahead(event, record.partition)

    def fold_ahead(self, event: Event, partition: int) -> None:
        """An own output after the committed offset, into the state."""
        self.state.evolve(event, partition)

    def restore_point(self, topic: str, partition: int) -> int | None:
        """Where the oldest message the state still holds was received. A message that left
        the state changes nothing when its later events are read."""
        return self._points.point(partition, self.state.holds)

    def forget(self, partitions: Sequence[tuple[str, int]]) -> None:
        self.state.forget({p for _topic, p in partitions})
        self._points.forget(p for _topic, p in partitions)
