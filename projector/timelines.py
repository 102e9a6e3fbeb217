"""Per-message timelines: every event of a message, its decision and its terminal outcome.

The order of a timeline is a function of the *set* of its events — by `occurred_at`, ties by
lifecycle stage, then event id — never of the order they were read in: a ledger event reaches
the projector from two topics, and a replay interleaves partitions differently from a live
reader. Copies of one event (same event id) are kept once.

The fold stores each event's record (`store.TimelineStore`, on disk) and its summary; an
entry is made from the record when a timeline is read, not for every event folded.
"""

from __future__ import annotations

from typing import Any

from katagate.projector import rows
from katagate.projector.canonical import jsonable, micros, timestamp
from katagate.projector.store import TimelineStore
from katagate.projector.summary import Key
from katagate.schemas import MAIL_LIFECYCLE, MailEvent, decode_event

# The lifecycle order of event types, to order events stamped with the same instant.
STAGE_ORDER = {name: rank for rank, name in enumerate(MAIL_LIFECYCLE)}
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


def order_key(event: MailEvent) -> Key:
    """Where an event stands in its message's timeline: microseconds since the epoch, the
    lifecycle rank, the event id's hex digits (ordered as its canonical string is)."""
    return (micros(event.occurred_at), STAGE_ORDER.get(event.type, len(STAGE_ORDER)),
            event.event_id.hex)


def render(store: TimelineStore, message_id: str) -> dict[str, Any] | None:
    """The body of GET /messages/{id}: the summary and every event in timeline order."""
    summary = store.summary(message_id)
    if summary is None:
        return None
    events: dict[str, MailEvent] = {}
    for record in store.records(message_id):
        event = decode_event(record)  # it decoded when it was stored
        if not isinstance(event, MailEvent):
            raise TypeError(f"{event.type} is not a mail event")
        events.setdefault(event.event_id.hex, event)
    ordered = sorted(events.values(), key=order_key)
    return {**rows.summary(message_id, summary), "events": [entry(e) for e in ordered]}


