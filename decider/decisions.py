"""The per-message decision shell: a stateful handler for the transactional loop over
`katagate.mail`. Its state (undecided messages, their deadlines) is restored from the log at
assignment; timers fire `ScanTimedOut` within a tick of the deadline, also after a restart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from decider.history import ControlHistory
from decider.process import Messages, Pending, react, timeouts
from eventlog.folded import FoldedTopic
from eventlog.loop import Poison
from eventlog.records import Consumed, Outgoing
from eventlog.restore_points import RestorePoints
from eventlog.topics import TopicNames
from schemas import (
    ActionDecided,
    Event,
    LateVerdictReceived,
    MessageReceived,
    ProducerRef,
    RuleKata,
    ScanTimedOut,
    SchemaError,
    decode_event,
)

# What the brain writes; after a restart its state must hold all of them (restore_ahead).
OWN_DECISIONS = (ActionDecided, ScanTimedOut, LateVerdictReceived)


class Decisions:
    def __init__(
        self,
        topics: TopicNames,
        control: FoldedTopic[ControlHistory],
        producer: ProducerRef,
        clock: Callable[[], datetime],
    ) -> None:
        self.messages = Messages()
        self._points = RestorePoints()
        self._mail = topics.mail
        self._control = control
        self._producer = producer
        self._clock = clock

    def _rule_of(self, pending: Pending) -> RuleKata:
        return self._control.value.at(pending.settings_version).rule(pending.rule_id).kata

    def _out(self, events: list[Event], partition: int) -> list[Outgoing]:
        for event in events:
            self.messages.evolve(event, partition)
        return [Outgoing.event(self._mail, e) for e in events]

    def handle(self, record: Consumed) -> list[Outgoing]:
        try:
            event = decode_event(record.value or b"")
        except SchemaError as exc:
            raise Poison(str(exc)) from exc
        self._control.pump(0)
        produced = react(self.messages, event, self._rule_of, self._clock(), self._producer)
        self._fold(event, record)
        return self._out(produced, record.partition)

    def _fold(self, event: Event, record: Consumed) -> None:
        self.messages.evolve(event, record.partition)
        if isinstance(event, MessageReceived):
            self._points.began(record.partition, event.message_id, record.offset)

    def restore(self, record: Consumed) -> None:
        try:
            event = decode_event(record.value or b"")
        except SchemaError:
            return
        self._fold(event, record)

    def restore_point(self, _topic: str, partition: int) -> int | None:
        """Where the oldest message the brain still holds (undecided, or decided while its
        scan was out) was received. A message that left the state before it changes nothing
        when its later events are read (`Messages.evolve`); past `REMEMBER_DECIDED` late-verdict
        candidates, one may be remembered again that a restore from the start would have
        evicted, and its late verdict is then recorded rather than ignored."""
        return self._points.point(partition, self.messages.holds)

    def restore_ahead(self, record: Consumed) -> None:
        """After the committed offset, only the brain's own decisions: they were made already."""
        try:
            event = decode_event(record.value or b"")
        except SchemaError:
            return
        if isinstance(event, OWN_DECISIONS):
            self.messages.evolve(event, record.partition)

    def forget(self, partitions: Sequence[tuple[str, int]]) -> None:
        self.messages.forget({p for _topic, p in partitions})
        self._points.forget(p for _topic, p in partitions)

    def tick(self) -> list[Outgoing]:
        self._control.pump(0)
        events = timeouts(self.messages, self._clock(), self._rule_of, self._producer)
        out: list[Outgoing] = []
        for event in events:
            pending = self.messages.pending.get(getattr(event, "message_id", ""))
            out += self._out([event], pending.partition if pending else 0)
        return out
