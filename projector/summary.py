"""What a message came to — rule, quarantine, verdict, decision, outcome — kept as it folds.

A summary is updated event by event, in whatever order the events are read, and ends the same
as folding the message's timeline in timeline order: each field keeps the event that wins by
timeline position (`Key`), not the one read last. So a summary never needs the timeline read
back, and the listing filters (`/messages?action=…`) read one row per message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from projector.canonical import from_micros
from schemas import (
    ActionDecided,
    Event,
    LateVerdictReceived,
    MessageDelivered,
    MessageReceived,
    QuarantineAdmitted,
    QuarantineDenied,
    ScanSubmitted,
    ScanTimedOut,
    VerdictReceived,
    terminal_outcome,
)

# A position in a timeline: (occurred_at in microseconds since the epoch, lifecycle rank, event
# id hex); see timelines.order_key.
Key = tuple[int, int, str]


def _later(current: tuple[Key, Any] | None, key: Key) -> bool:
    return current is None or key > current[0]


# What a message's events, once two of them are known, tell the counters: a scan's duration
# (submitted → verdict), a delivery's latency (received → delivered), a delivery without a
# verdict (decided Skipped, then delivered). Each is told once, whichever event came second.
Observation = tuple[str, int | str]


@dataclass
class MessageSummary:
    rule_id: str | None = None
    first_at: int | None = None  # microseconds since the epoch
    last_at: int | None = None
    event_count: int = 0
    quarantine: tuple[Key, dict[str, Any]] | None = None  # the last admission or denial
    verdict: tuple[Key, str] | None = None  # the last verdict's state
    timed_out: bool = False
    decision: tuple[Key, dict[str, Any]] | None = None  # the last decision
    outcome: tuple[Key, str] | None = None  # the first terminal event
    late: list[tuple[Key, str]] = field(default_factory=list)
    # Instants (microseconds) that make the observations, and which were made.
    received_at: int | None = None
    submitted_at: int | None = None
    verdict_at: int | None = None
    delivered_at: int | None = None
    observed: list[str] = field(default_factory=list)

    def add(self, key: Key, event: Event) -> list[Observation]:
        """Fold one event of the message (each event once: copies are removed upstream);
        return the observations it completes."""
        self.event_count += 1
        at = key[0]
        if self.first_at is None or at < self.first_at:
            self.first_at = at
        if self.last_at is None or at > self.last_at:
            self.last_at = at
        match event:
            case MessageReceived():
                self.rule_id = event.rule_id
                self.received_at = at
            case QuarantineAdmitted() if _later(self.quarantine, key):
                self.quarantine = (key, {"admitted": True, "reason": None})
            case QuarantineDenied() if _later(self.quarantine, key):
                self.quarantine = (key, {"admitted": False, "reason": event.reason})
            case VerdictReceived():
                if self.verdict_at is None or at < self.verdict_at:
                    self.verdict_at = at
                if _later(self.verdict, key):
                    self.verdict = (key, event.state)
            case ScanSubmitted():
                if self.submitted_at is None or at < self.submitted_at:
                    self.submitted_at = at
            case ScanTimedOut():
                self.timed_out = True
            case ActionDecided() if _later(self.decision, key):
                self.decision = (key, {"action": event.action, "reason": event.reason,
                                       "skipped": event.skipped, "tag": event.tag,
                                       "backup": event.backup})
            case LateVerdictReceived():
                self.late.append((key, event.state))
                self.late.sort()
            case _:
                outcome = terminal_outcome(event)
                if outcome is not None and (self.outcome is None or key < self.outcome[0]):
                    self.outcome = (key, outcome)
                if isinstance(event, MessageDelivered):
                    self.delivered_at = at
        return self._observations()

    def _observations(self) -> list[Observation]:
        found: list[Observation] = []
        if ("scan" not in self.observed and self.submitted_at is not None
                and self.verdict_at is not None):
            self.observed.append("scan")
            found.append(("scan_duration", max(0, self.verdict_at - self.submitted_at)))
        if ("delivery" not in self.observed and self.received_at is not None
                and self.delivered_at is not None):
            self.observed.append("delivery")
            found.append(("delivery_latency", max(0, self.delivered_at - self.received_at)))
        if ("skipped" not in self.observed and self.delivered_at is not None
                and self.decision is not None and self.decision[1]["skipped"]):
            self.observed.append("skipped")
            found.append(("without_verdict", str(self.decision[1]["reason"])))
        return found

    # A verdict from KATA stands; a response timeout shows only where no verdict came.
    @property
    def verdict_state(self) -> str | None:
        if self.verdict is not None:
            return self.verdict[1]
        return "response_timeout" if self.timed_out else None

    @property
    def action(self) -> str | None:
        return None if self.decision is None else str(self.decision[1]["action"])

    @property
    def reason(self) -> str | None:
        return None if self.decision is None else str(self.decision[1]["reason"])

    @property
    def outcome_name(self) -> str | None:
        return None if self.outcome is None else self.outcome[1]

    def render(self, message_id: str) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "rule_id": self.rule_id,
            "first_at": None if self.first_at is None else from_micros(self.first_at),
            "last_at": None if self.last_at is None else from_micros(self.last_at),
            "event_count": self.event_count,
            "quarantine": None if self.quarantine is None else dict(self.quarantine[1]),
            "verdict": self.verdict_state,
            "late_verdicts": [state for _key, state in self.late],
            "decision": None if self.decision is None else dict(self.decision[1]),
            "outcome": self.outcome_name,
        }

    def to_state(self) -> list[Any]:
        return [self.rule_id, self.first_at, self.last_at, self.event_count, self.quarantine,
                self.verdict, self.timed_out, self.decision, self.outcome, self.late,
                self.received_at, self.submitted_at, self.verdict_at, self.delivered_at,
                self.observed]

    @classmethod
    def from_state(cls, state: list[Any]) -> MessageSummary:
        def keyed(pair: list[Any] | None) -> Any:
            return None if pair is None else (tuple(pair[0]), pair[1])

        (rule_id, first_at, last_at, count, quarantine, verdict, timed_out, decision, outcome,
         late, received_at, submitted_at, verdict_at, delivered_at, observed) = state
        return cls(rule_id, first_at, last_at, count, keyed(quarantine), keyed(verdict),
                   timed_out, keyed(decision), keyed(outcome), [keyed(p) for p in late],
                   received_at, submitted_at, verdict_at, delivered_at, list(observed))
