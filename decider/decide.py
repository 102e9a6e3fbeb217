"""Each message's way from received to decided, as a fold and a reaction. Pure: the clock and
the configuration come in as arguments; event ids are derived from the message id and the step,
so a step redone after a crash writes the same event.

One `ActionDecided` per message, on the first of: a denial by the quarantine, a verdict, a
final scan failure, the response timeout, a forced release, a deletion by an administrator.
A verdict after that is recorded as a late one.
"""

from __future__ import annotations

import heapq
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from katagate.decider import policy
from katagate.schemas import (
    ActionDecided,
    Event,
    ForcedDelete,
    ForcedRelease,
    LateVerdictReceived,
    MessageReceived,
    ProducerRef,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineHeld,
    ScanFailed,
    ScanSubmitted,
    ScanTimedOut,
    VerdictReceived,
)
from katagate.schemas.ids import DECISIONS, step_id

REMEMBER_DECIDED = 100_000  # decided messages kept to recognise late verdicts
# The decisions after which a verdict may still come: the scan was out, nobody waited for it.
LATE_VERDICT_POSSIBLE = frozenset({"timeout", "forced_release", "deleted_by_admin"})


@dataclass(frozen=True)
class Pending:
    message_id: str
    partition: int
    correlation_id: uuid.UUID
    rule_id: str | None
    settings_version: int
    deadline_at: datetime | None = None
    submitted: bool = False


class Messages:
    """Undecided messages of the partitions this instance holds, and their deadlines."""

    def __init__(self) -> None:
        self.pending: dict[str, Pending] = {}
        self.decided: OrderedDict[str, str] = OrderedDict()  # message id -> why it went on
        self._deadlines: list[tuple[datetime, str]] = []

    def evolve(self, event: Event, partition: int) -> None:
        m = getattr(event, "message_id", None)
        if m is None:
            return
        match event:
            case MessageReceived():
                if m not in self.decided:
                    self.pending[m] = Pending(
                        m, partition, event.correlation_id or event.event_id, event.rule_id,
                        event.settings_version,
                    )
            case QuarantineAdmitted() | QuarantineHeld() if m in self.pending:
                # A held message's hold ends at its deadline unless it is admitted first; then
                # the admission's deadline replaces it (the old entry is void when popped).
                self.pending[m] = replace(self.pending[m], deadline_at=event.deadline_at)
                heapq.heappush(self._deadlines, (event.deadline_at, m))
            case ScanSubmitted() if m in self.pending:
                self.pending[m] = replace(self.pending[m], submitted=True)
            case ActionDecided():
                self.pending.pop(m, None)
                # Only a message that went on while its scan was still out can meet a verdict
                # later; remembering every decision grew the stage with the mail it carried.
                if event.reason in LATE_VERDICT_POSSIBLE:
                    self.decided[m] = event.reason
                    self.decided.move_to_end(m)
                    while len(self.decided) > REMEMBER_DECIDED:
                        self.decided.popitem(last=False)
                self._compact_deadlines()

    def _compact_deadlines(self) -> None:
        """Deadlines of decided messages leave the heap lazily, when due; past twice the
        pending count, rebuild it, so that it holds no more than the undecided messages."""
        if len(self._deadlines) > 2 * len(self.pending) + 1000:
            self._deadlines = [(at, m) for at, m in self._deadlines
                               if (p := self.pending.get(m)) is not None and p.deadline_at == at]
            heapq.heapify(self._deadlines)

    def holds(self, message_id: str) -> bool:
        """Whether the state still holds the message: undecided, or decided while its scan
        was out. Of the events of a message it no longer holds, only a decision that may meet
        a late verdict changes anything, and such a message is no longer held only when the
        `REMEMBER_DECIDED` bound dropped it; so a restore may begin at the oldest held
        message's `MessageReceived` (see `Decisions.restore_point`)."""
        return message_id in self.pending or message_id in self.decided

    def forget(self, partitions: set[int]) -> None:
        self.pending = {m: p for m, p in self.pending.items() if p.partition not in partitions}

    def due(self, now: datetime) -> list[Pending]:
        """Admitted (or held), undecided messages whose response timeout has passed."""
        due: dict[str, Pending] = {}
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, m = heapq.heappop(self._deadlines)
            pending = self.pending.get(m)
            # A held message admitted within the same instant has two equal entries: one
            # decision for it (a second one broke invariant 2, found by the property test).
            if pending is not None and pending.deadline_at == deadline:
                due[m] = pending
        return list(due.values())


def _decision_event(
    pending: Pending, outcome: str, rule: policy.Policy, cause: Event | None, now: datetime,
    producer: ProducerRef,
) -> ActionDecided:
    decision = policy.decide(outcome, rule.kata, rule.on_unavailable, rule.hold_outcome)
    return ActionDecided(
        event_id=step_id(DECISIONS, pending.message_id, "decided"), occurred_at=now,
        producer=producer,
        message_id=pending.message_id, correlation_id=pending.correlation_id,
        causation_id=cause.event_id if cause is not None else None,
        action=decision.action, tag=decision.tag, backup=decision.backup,
        skipped=decision.skipped, reason=decision.reason, held=decision.held,
    )


def outcome_of(event: Event) -> str | None:
    """What an event says about the scan's outcome, if it decides the message."""
    match event:
        case QuarantineDenied():
            return event.reason
        case VerdictReceived():
            return event.state
        case ScanFailed(final=True):
            return "too_large" if event.reason == "too_large" else "error"
        case ScanTimedOut():
            return "timeout"
        case ForcedRelease():
            return "forced_release"
        case ForcedDelete():
            return "deleted_by_admin"
    return None


RuleOf = Callable[[Pending], policy.Policy]
# What a late verdict came after, by the reason the message was decided for.
LATE_AFTER = {"forced_release": "forced_release", "deleted_by_admin": "deleted_by_admin"}


def decide(
    messages: Messages, event: Event, rule_of: RuleOf, now: datetime, producer: ProducerRef
) -> list[Event]:
    """The events `event` causes. `rule_of` gives the policy of a message's rule (its KATA
    section, on_unavailable, hold_outcome) as configured at the message's settings version."""
    m = getattr(event, "message_id", None)
    if m is None:
        return []
    outcome = outcome_of(event)
    if outcome is None:
        return []
    pending = messages.pending.get(m)
    if pending is None:
        if isinstance(event, VerdictReceived) and m in messages.decided:
            return [LateVerdictReceived(
                event_id=step_id(DECISIONS, m, "late-verdict"), occurred_at=now, producer=producer,
                message_id=m, correlation_id=event.correlation_id, causation_id=event.event_id,
                scan_id=event.scan_id, state=event.state, detects=event.detects,
                after=LATE_AFTER.get(messages.decided[m], "timeout"),
            )]
        return []
    return [_decision_event(pending, outcome, rule_of(pending), event, now, producer)]


def timeouts(
    messages: Messages, now: datetime, rule_of: RuleOf, producer: ProducerRef
) -> list[Event]:
    """ScanTimedOut and the Skipped decision for every message past its deadline."""
    events: list[Event] = []
    for pending in messages.due(now):
        assert pending.deadline_at is not None  # noqa: S101 - only admitted ones have deadlines
        timed_out = ScanTimedOut(
            event_id=step_id(DECISIONS, pending.message_id, "timed-out"), occurred_at=now,
            producer=producer, message_id=pending.message_id,
            correlation_id=pending.correlation_id,
            scan_id=pending.message_id if pending.submitted else None,
            deadline_at=pending.deadline_at,
        )
        events += [timed_out, _decision_event(
            pending, "timeout", rule_of(pending), timed_out, now, producer)]
    return events
