"""The per-message decision shell: a stateful handler for the transactional loop over
`katagate.mail`. Its state (undecided messages, their deadlines) is restored from the log at
assignment; timers fire `ScanTimedOut` within a tick of the deadline, also after a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from katagate.decider.decide import Messages, Pending, decide, timeouts
from katagate.decider.history import ControlHistory
from katagate.decider.mail_fold import MailFold
from katagate.decider.policy import Policy, policy_of
from katagate.eventlog.folded import FoldedTopic
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    ActionDecided,
    LateVerdictReceived,
    ProducerRef,
    ScanTimedOut,
)


class Decisions(MailFold):
    # What the decisions write; after a restart the state must hold all of them.
    own_outputs = (ActionDecided, ScanTimedOut, LateVerdictReceived)

    def __init__(
        self,
        topics: TopicNames,
        control: FoldedTopic[ControlHistory],
        producer: ProducerRef,
        clock: Callable[[], datetime],
    ) -> None:
        self.messages = Messages()
        super().__init__(self.messages, topics.mail)
        self._control = control
        self._producer = producer
        self._clock = clock

    def _rule_of(self, pending: Pending) -> Policy:
        return policy_of(self._control.value.at(pending.settings_version), pending.rule_id)

    def decide(self, record: Consumed) -> list[Outgoing]:
        event = self.read(record)
        self._control.pump(0)
        produced = decide(self.messages, event, self._rule_of, self._clock(), self._producer)
        self.fold(event, record)
        return self.emit(produced, record.partition)

    def restore_point(self, topic: str, partition: int) -> int | None:
        """Where the oldest message still held (undecided, or decided while its scan was out)
        was received. Past `REMEMBER_DECIDED` late-verdict candidates, one may be remembered
        again that a restore from the start would have evicted, and its late verdict is then
        recorded rather than ignored."""
        return super().restore_point(topic, partition)

    def tick(self) -> list[Outgoing]:
        self._control.pump(0)
        events = timeouts(self.messages, self._clock(), self._rule_of, self._producer)
        out: list[Outgoing] = []
        for event in events:
            pending = self.messages.pending.get(getattr(event, "message_id", ""))
            out += self.emit([event], pending.partition if pending else 0)
        return out
