"""Counters over the whole log: per action, verdict state, Skipped reason, denial reason and
terminal outcome. Ledger events arrive twice (the ledger and its mirror) and count once, by
event id; every other event is on exactly one partition once (the stages write exactly once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas import (
    ActionDecided,
    DeliveryFailed,
    Event,
    LateVerdictReceived,
    MessageDelivered,
    MessageDiscarded,
    MessageReceived,
    NdrSent,
    NdrSuppressed,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineReleased,
    ScanTimedOut,
    VerdictReceived,
)

GROUPS = (
    "actions", "verdict_states", "late_verdict_states", "skipped_reasons", "denial_reasons",
    "outcomes", "quarantine", "messages",
)


def terminal_outcome(event: Event) -> str | None:
    """The terminal event of a message (DESIGN invariant 2), named; None for any other."""
    match event:
        case MessageDelivered():
            return "delivered"
        case MessageDiscarded():
            return "discarded"
        case NdrSent(reason="kata_reject"):
            return "ndr_sent"
        case NdrSuppressed():
            return "ndr_suppressed"
        case DeliveryFailed():
            return "delivery_failed"
    return None


@dataclass
class Counters:
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {group: {} for group in GROUPS})
    ledger_seen: set[str] = field(default_factory=set)  # event ids of ledger events counted

    def to_state(self) -> dict[str, Any]:
        return {"counts": self.counts, "ledger_seen": sorted(self.ledger_seen)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Counters:
        return cls(counts={g: dict(state["counts"].get(g, {})) for g in GROUPS},
                   ledger_seen=set(state["ledger_seen"]))


def _bump(view: Counters, group: str, key: str) -> None:
    counts = view.counts[group]
    counts[key] = counts.get(key, 0) + 1


def apply(view: Counters, event: Event) -> Counters:
    """Updates the view in place and returns it."""
    if isinstance(event, QuarantineAdmitted | QuarantineDenied | QuarantineReleased):
        ledger_id = str(event.event_id)
        if ledger_id in view.ledger_seen:
            return view
        view.ledger_seen.add(ledger_id)
    match event:
        case MessageReceived():
            _bump(view, "messages", "received")
        case QuarantineAdmitted():
            _bump(view, "quarantine", "admitted")
        case QuarantineDenied():
            _bump(view, "quarantine", "denied")
            _bump(view, "denial_reasons", event.reason)
        case QuarantineReleased():
            _bump(view, "quarantine", "released")
        case VerdictReceived():
            _bump(view, "verdict_states", event.state)
        case LateVerdictReceived():
            _bump(view, "late_verdict_states", event.state)
        case ScanTimedOut():
            _bump(view, "verdict_states", "response_timeout")  # ours, not KATA's "timeout"
        case ActionDecided():
            _bump(view, "actions", event.action)
            if event.skipped:
                _bump(view, "skipped_reasons", event.reason)
        case _ if (outcome := terminal_outcome(event)) is not None:
            _bump(view, "outcomes", outcome)
    return view


def render(view: Counters) -> dict[str, Any]:
    return {group: dict(view.counts[group]) for group in GROUPS}
