"""What a message came to — envelope, rule, quarantine, verdict, decision, delivery, Backup —
kept as it folds.

A summary is updated event by event, in whatever order the events are read, and ends the same
as folding the message's timeline in timeline order: each field keeps the event that wins by
timeline position (`Key`), not the one read last. So a summary never needs the timeline read
back, and the listings and searches read one row per message (`rows.py` renders them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from katagate.projector.canonical import micros
from katagate.schemas import (
    ActionDecided,
    BackupRemoved,
    BackupResendRequested,
    BackupResent,
    BackupRetained,
    DeliveryDeferred,
    DeliveryFailed,
    Event,
    LateVerdictReceived,
    MessageDelivered,
    MessageReceived,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineReleased,
    QueueActionRequested,
    ScanSubmitted,
    ScanTimedOut,
    VerdictReceived,
    terminal_outcome,
)

# A position in a timeline: (occurred_at in microseconds since the epoch, lifecycle rank, event
# id hex); see timelines.order_key.
Key = tuple[int, int, str]
Keyed = tuple[Key, Any]


def _later(current: Keyed | None, key: Key) -> bool:
    return current is None or key > current[0]


def _earlier(current: Keyed | None, key: Key) -> bool:
    return current is None or key < current[0]


# What a message's events, once two of them are known, tell the counters: a scan's duration
# (submitted → verdict), a delivery's latency (received → delivered), a delivery without a
# verdict (decided Skipped, then delivered). Each is told once, whichever event came second.
Observation = tuple[str, int | str]

# Fields holding (Key, value) pairs (JSON turns the pairs into lists; from_state turns back).
_KEYED = ("quarantine", "verdict", "decision", "outcome", "admission", "released",
          "delivery", "first_deferral", "retained", "removed", "queue_action")


@dataclass
class MessageSummary:
    rule_id: str | None = None
    first_at: int | None = None  # microseconds since the epoch
    last_at: int | None = None
    event_count: int = 0
    quarantine: Keyed | None = None  # the last admission or denial
    verdict: Keyed | None = None  # the last verdict: [state, [[type, name], ...]]
    timed_out: bool = False
    decision: Keyed | None = None  # the last decision
    outcome: Keyed | None = None  # the first terminal event
    late: list[Keyed] = field(default_factory=list)
    # Instants (microseconds) that make the observations, and which were made.
    received_at: int | None = None
    submitted_at: int | None = None
    verdict_at: int | None = None
    delivered_at: int | None = None
    observed: list[str] = field(default_factory=list)
    # The envelope, as ingest received it: [from, [to...], subject, size, client].
    envelope: list[Any] | None = None
    admission: Keyed | None = None  # the last admission: [admitted_at, deadline_at, size]
    released: Keyed | None = None  # the first release from the quarantine
    delivery: Keyed | None = None  # the last attempt: [kind, reply, next_hop, retry_at, attempt]
    first_deferral: Keyed | None = None  # the first deferred attempt's instant
    retained: Keyed | None = None  # [stored_at, expires_at, location, sha256, size]
    removed: Keyed | None = None  # [cause, actor, at]
    # Resends: request event id -> [key, actor, at, to]; outcomes by the request's id ->
    # [key, outcome, reply, at] (the earliest outcome stands).
    resends: dict[str, list[Any]] = field(default_factory=dict)
    resent: dict[str, list[Any]] = field(default_factory=dict)
    queue_action: Keyed | None = None  # the last request: [action, actor, at]

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
                self.envelope = [event.envelope_from, list(event.envelope_to), event.subject,
                                 event.size, str(event.client_ip)]
            case QuarantineAdmitted():
                if _later(self.quarantine, key):
                    self.quarantine = (key, {"admitted": True, "reason": None})
                if _later(self.admission, key):
                    self.admission = (key, [at, micros(event.deadline_at), event.size])
            case QuarantineDenied() if _later(self.quarantine, key):
                self.quarantine = (key, {"admitted": False, "reason": event.reason})
            case QuarantineReleased() if _earlier(self.released, key):
                self.released = (key, at)
            case VerdictReceived():
                if self.verdict_at is None or at < self.verdict_at:
                    self.verdict_at = at
                if _later(self.verdict, key):
                    self.verdict = (key, [event.state,
                                          [[d.type, d.name] for d in event.detects]])
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
            case BackupRetained() if _later(self.retained, key):
                self.retained = (key, [micros(event.stored_at), micros(event.expires_at),
                                       event.location.model_dump(mode="json"), event.sha256,
                                       event.size])
            case BackupRemoved() if _earlier(self.removed, key):
                self.removed = (key, [event.cause, event.actor, at])
            case BackupResendRequested():
                self.resends[event.event_id.hex] = [list(key), event.actor, at,
                                                    list(event.recipients)]
            case BackupResent() if event.causation_id is not None:
                request = event.causation_id.hex
                if request not in self.resent or list(key) < self.resent[request][0]:
                    self.resent[request] = [list(key), event.outcome, event.reply, at]
            case QueueActionRequested() if _later(self.queue_action, key):
                self.queue_action = (key, [event.action, event.actor, at])
            case _:
                self._delivery(key, event)
        return self._observations()

    def _delivery(self, key: Key, event: Event) -> None:
        outcome = terminal_outcome(event)
        if outcome is not None and _earlier(self.outcome, key):
            self.outcome = (key, outcome)
        if isinstance(event, MessageDelivered):
            self.delivered_at = key[0]
        if isinstance(event, DeliveryDeferred):
            if _earlier(self.first_deferral, key):
                self.first_deferral = (key, key[0])
            attempt = [event.reply, str(event.next_hop), micros(event.retry_at), event.attempt]
        elif isinstance(event, MessageDelivered | DeliveryFailed):
            attempt = [event.reply, str(event.next_hop), None, event.attempts]
        else:
            return
        if _later(self.delivery, key):
            self.delivery = (key, [event.type, *attempt])

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
            return str(self.verdict[1][0])
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

    @property
    def held(self) -> bool:
        """Waiting in the KATA Quarantine: admitted and not released."""
        return self.admission is not None and self.released is None

    def to_state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MessageSummary:
        def keyed(pair: list[Any] | None) -> Any:
            return None if pair is None else (tuple(pair[0]), pair[1])

        fields = dict(state)
        for name in _KEYED:
            fields[name] = keyed(fields[name])
        fields["late"] = [keyed(p) for p in fields["late"]]
        return cls(**fields)
