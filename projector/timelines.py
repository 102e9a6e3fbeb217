"""Per-message timelines: every event of a message, its decision and its terminal outcome.

The order of a timeline is a function of the *set* of its events — by `occurred_at`, ties by
lifecycle stage, then event id — never of the order they were read in: a ledger event reaches
the projector from two topics, and a replay interleaves partitions differently from a live
reader. Copies of one event (same event id) are kept once.

The store sits behind `TimelineStore`: this one holds everything in memory; a bounded or
on-disk store can replace it without touching the fold.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any, Protocol

from projector.canonical import jsonable, timestamp
from schemas import Event, MailEvent

# The lifecycle order of event types, to order events stamped with the same instant.
STAGE_ORDER = {name: rank for rank, name in enumerate((
    "mail.received", "quarantine.admitted", "quarantine.denied", "scan.submitted",
    "scan.failed", "scan.verdict", "scan.timed_out", "quarantine.forced_release",
    "action.decided", "quarantine.released", "backup.stored", "delivery.deferred",
    "delivery.delivered", "delivery.failed", "message.discarded", "ndr.sent", "ndr.suppressed",
    "scan.late_verdict",
))}
# Envelope fields shown on their own; bulky fields a timeline does not need.
_ENVELOPE = {"type", "schema_version", "event_id", "occurred_at", "producer", "message_id",
             "correlation_id", "causation_id"}
_BULKY = {"raw", "location"}

Entry = dict[str, Any]


def entry(event: MailEvent) -> Entry:
    """One line of a timeline: the envelope essentials and the event's key fields."""
    fields = {name: jsonable(getattr(event, name)) for name in type(event).model_fields
              if name not in _ENVELOPE and name not in _BULKY}
    return {
        "type": event.type,
        "event_id": str(event.event_id),
        "occurred_at": timestamp(event.occurred_at),
        "producer": f"{event.producer.stage}/{event.producer.instance}",
        "fields": fields,
    }


def _order(item: Entry) -> tuple[str, int, str]:
    return (item["occurred_at"], STAGE_ORDER.get(item["type"], len(STAGE_ORDER)),
            item["event_id"])


class TimelineStore(Protocol):
    def add(self, message_id: str, item: Entry) -> bool:
        """Keep an entry (once per event id); False if it was already there."""
        ...

    def events(self, message_id: str) -> list[Entry] | None:
        """The message's entries in timeline order; None for an unknown message."""
        ...

    def message_ids(self, after: str | None = None) -> Iterator[str]:
        """Message ids in ascending order, strictly after `after`."""
        ...

    def to_state(self) -> dict[str, Any]: ...


class MemoryTimelines:
    """Every timeline in memory (unbounded: bounding it is a later issue)."""

    def __init__(self, messages: dict[str, dict[str, Entry]] | None = None) -> None:
        self._messages: dict[str, dict[str, Entry]] = messages or {}
        self._sorted: list[str] | None = None

    def add(self, message_id: str, item: Entry) -> bool:
        events = self._messages.get(message_id)
        if events is None:
            events = self._messages[message_id] = {}
            self._sorted = None
        if item["event_id"] in events:
            return False
        events[item["event_id"]] = item
        return True

    def events(self, message_id: str) -> list[Entry] | None:
        events = self._messages.get(message_id)
        return None if events is None else sorted(events.values(), key=_order)

    def message_ids(self, after: str | None = None) -> Iterator[str]:
        if self._sorted is None:
            self._sorted = sorted(self._messages)
        ids = self._sorted
        start = 0
        if after is not None:
            start = bisect.bisect_right(ids, after)
        return iter(ids[start:])

    def __len__(self) -> int:
        return len(self._messages)

    def to_state(self) -> dict[str, Any]:
        return {m: list(events.values()) for m, events in self._messages.items()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MemoryTimelines:
        return cls({m: {e["event_id"]: e for e in events} for m, events in state.items()})


def apply(store: TimelineStore, event: Event) -> TimelineStore:
    """Adds a mail event to its message's timeline (in place); other events are ignored."""
    if isinstance(event, MailEvent):
        store.add(event.message_id, entry(event))
    return store


TERMINAL_TYPES = frozenset({"delivery.delivered", "message.discarded", "ndr.sent",
                            "ndr.suppressed", "delivery.failed"})


def _outcome_of(item: Entry) -> str | None:
    if item["type"] == "ndr.sent" and item["fields"].get("reason") != "kata_reject":
        return None
    return {"delivery.delivered": "delivered", "message.discarded": "discarded",
            "ndr.sent": "ndr_sent", "ndr.suppressed": "ndr_suppressed",
            "delivery.failed": "delivery_failed"}[item["type"]]


def summary(message_id: str, events: list[Entry]) -> dict[str, Any]:
    """What a message came to, from its timeline alone."""
    quarantine: dict[str, Any] | None = None
    verdict: str | None = None
    decision: dict[str, Any] | None = None
    outcome: str | None = None
    rule_id: str | None = None
    for item in events:
        kind, fields = item["type"], item["fields"]
        if kind == "mail.received":
            rule_id = fields["rule_id"]
        elif kind == "quarantine.admitted":
            quarantine = {"admitted": True, "reason": None}
        elif kind == "quarantine.denied":
            quarantine = {"admitted": False, "reason": fields["reason"]}
        elif kind == "scan.verdict":
            verdict = fields["state"]
        elif kind == "scan.timed_out" and verdict is None:
            verdict = "response_timeout"
        elif kind == "action.decided":
            decision = {k: fields[k] for k in ("action", "reason", "skipped", "tag", "backup")}
        elif kind in TERMINAL_TYPES and outcome is None:
            outcome = _outcome_of(item)
    late = [i["fields"]["state"] for i in events
            if i["type"] == "scan.late_verdict"]
    return {
        "message_id": message_id,
        "rule_id": rule_id,
        "first_at": events[0]["occurred_at"] if events else None,
        "last_at": events[-1]["occurred_at"] if events else None,
        "event_count": len(events),
        "quarantine": quarantine,
        "verdict": verdict,
        "late_verdicts": late,
        "decision": decision,
        "outcome": outcome,
    }


def render(store: TimelineStore, message_id: str) -> dict[str, Any] | None:
    events = store.events(message_id)
    if events is None:
        return None
    return {**summary(message_id, events), "events": events}


