"""Counters over the whole log: per action, verdict state, Skipped reason, denial reason and
terminal outcome. Each event is folded once: the ledger's mirrored copies are removed before
the folds (`copies.py`), and the stages write everything else exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from projector.summary import terminal_outcome
from schemas import (
    ActionDecided,
    Event,
    LateVerdictReceived,
    MessageReceived,
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


@dataclass
class Counters:
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {group: {} for group in GROUPS})

    def to_state(self) -> dict[str, Any]:
        return {"counts": self.counts}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Counters:
        return cls(counts={g: dict(state["counts"].get(g, {})) for g in GROUPS})


def _bump(view: Counters, group: str, key: str) -> None:
    counts = view.counts[group]
    counts[key] = counts.get(key, 0) + 1


def apply(view: Counters, event: Event) -> Counters:
    """Updates the view in place and returns it."""
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
