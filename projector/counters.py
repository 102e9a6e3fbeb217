"""Counters over the whole log: per action, verdict state, detect type, Skipped reason, denial
reason, release cause, delivery and terminal outcome; and two histograms, scan duration and
delivery latency, from the observations the message summaries make. Each event is folded once:
the ledger's mirrored copies are removed before the folds (`copies.py`), and the stages write
everything else exactly once. Histogram sums are kept in integer microseconds, so they do not
depend on the order events were read in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from katagate.projector.summary import Observation
from katagate.schemas import (
    ActionDecided,
    DeliveryDeferred,
    Event,
    LateVerdictReceived,
    MessageReceived,
    NdrSent,
    NdrSuppressed,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineReleased,
    ScanTimedOut,
    VerdictReceived,
    terminal_outcome,
)

GROUPS = (
    "actions", "verdict_states", "late_verdict_states", "skipped_reasons", "denial_reasons",
    "outcomes", "quarantine", "messages", "detect_types", "release_causes", "deliveries",
    "ndr", "without_verdict",
)
# Upper bounds in seconds. KATA takes seconds to minutes (sandboxing), up to the response
# timeout (600 s by default, at most a day); delivery adds the scan to the next hop's time.
BUCKETS: dict[str, tuple[float, ...]] = {
    "scan_duration_seconds": (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600, 86400),
    "delivery_latency_seconds": (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800,
                                 3600, 86400),
}
OBSERVED = {"scan_duration": "scan_duration_seconds",
            "delivery_latency": "delivery_latency_seconds"}


@dataclass
class Histogram:
    counts: list[int]  # per bucket (not cumulative), and one past the last bound
    sum_micros: int = 0

    def observe(self, bounds: tuple[float, ...], micros: int) -> None:
        index = next((i for i, bound in enumerate(bounds) if micros <= bound * 1_000_000),
                     len(bounds))
        self.counts[index] += 1
        self.sum_micros += micros


def _histograms() -> dict[str, Histogram]:
    return {name: Histogram([0] * (len(bounds) + 1)) for name, bounds in BUCKETS.items()}


@dataclass
class Counters:
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {group: {} for group in GROUPS})
    histograms: dict[str, Histogram] = field(default_factory=_histograms)

    def to_state(self) -> dict[str, Any]:
        return {"counts": self.counts,
                "histograms": {name: [h.counts, h.sum_micros]
                               for name, h in self.histograms.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Counters:
        return cls(counts={g: dict(state["counts"].get(g, {})) for g in GROUPS},
                   histograms={name: Histogram(list(counts), int(total))
                               for name, (counts, total) in state["histograms"].items()})


def _bump(view: Counters, group: str, key: str) -> None:
    counts = view.counts[group]
    counts[key] = counts.get(key, 0) + 1


def evolve(view: Counters, event: Event) -> Counters:
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
            _bump(view, "release_causes", event.cause)
        case VerdictReceived():
            _bump(view, "verdict_states", event.state)
            for detect in event.detects:
                _bump(view, "detect_types", detect.type)
        case LateVerdictReceived():
            _bump(view, "late_verdict_states", event.state)
        case ScanTimedOut():
            _bump(view, "verdict_states", "response_timeout")  # ours, not KATA's "timeout"
        case ActionDecided():
            _bump(view, "actions", event.action)
            if event.skipped:
                _bump(view, "skipped_reasons", event.reason)
        case DeliveryDeferred():
            _bump(view, "deliveries", "deferred")
        case NdrSuppressed():
            _bump(view, "ndr", "suppressed")
            _bump(view, "outcomes", "ndr_suppressed")
        case NdrSent():
            _bump(view, "ndr", "sent")
            if (outcome := terminal_outcome(event)) is not None:
                _bump(view, "outcomes", outcome)
        case _ if (outcome := terminal_outcome(event)) is not None:
            _bump(view, "outcomes", outcome)
            if outcome in ("delivered", "delivery_failed"):
                _bump(view, "deliveries", "delivered" if outcome == "delivered" else "failed")
    return view


def observe(view: Counters, observation: Observation) -> Counters:
    """An observation a message summary made: a duration, or a delivery without a verdict."""
    kind, value = observation
    if kind == "without_verdict":
        _bump(view, "without_verdict", str(value))
    else:
        name = OBSERVED[kind]
        view.histograms[name].observe(BUCKETS[name], int(value))
    return view


def render(view: Counters) -> dict[str, Any]:
    rendered: dict[str, Any] = {group: dict(view.counts[group]) for group in GROUPS}
    rendered["histograms"] = {
        name: {"le": [*BUCKETS[name], "+Inf"], "counts": list(h.counts),
               "count": sum(h.counts), "sum_seconds": h.sum_micros / 1_000_000}
        for name, h in view.histograms.items()}
    return rendered
