"""From an accepted SMTP transaction to the `MessageReceived` event, pure.

Ids, the clock and the Kafka location are inputs; the stored message is `trace` (our Received
field, ingest/trace.py) followed by `data`, the client's bytes; the rule is matched on envelope
addresses against the configuration in force (schemas.match_rule).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from katagate.ingest.envelope import NULL_SENDER
from katagate.schemas import (
    DEFAULT_RULE,
    ControlState,
    MessageReceived,
    ProducerRef,
    RawLocation,
    match_rule,
)


@dataclass(frozen=True)
class Accepted:
    """A message that passed every check and waits for its writes to be durable."""

    message_id: str
    event_id: uuid.UUID
    occurred_at: datetime
    envelope_from: str  # "" for the null sender
    envelope_to: tuple[str, ...]
    client_ip: str
    helo: str
    tls: bool
    subject: str | None
    rule_id: str | None  # None: no rule matched, the default rule applies
    settings_version: int
    data: bytes  # as the client sent it (dot-unstuffed)
    trace: bytes = b""  # our Received field: stored in front of `data`
    # The SHA-256 of the bytes as the client sent them (the verdict cache's key); None only
    # where a caller has no such bytes apart from `data`.
    content_sha256: str | None = None
    # Split by rule (ingest/split.py): one copy per KATA section, the first under
    # `message_id` (the raw chunks' key). Empty: one message, `envelope_to` and `rule_id`.
    copies: tuple[Copy, ...] = ()


@dataclass(frozen=True)
class Copy:
    """One copy of a split message: its own id, event id, recipients and rule."""

    message_id: str
    event_id: uuid.UUID
    rule_id: str | None
    envelope_to: tuple[str, ...]


def sender_of(mail_from: str) -> str:
    return "" if mail_from == NULL_SENDER else mail_from


def rule_for(state: ControlState, sender: str, recipients: list[str]) -> str | None:
    rule = match_rule(state, sender, recipients)
    return None if rule.rule_id == DEFAULT_RULE.rule_id else rule.rule_id


def received_events(
    accepted: Accepted, producer: ProducerRef, sha256: str, size: int, location: RawLocation
) -> list[MessageReceived]:
    """The `MessageReceived` of the message, or of each of its copies: they share the raw
    chunks, written once under the first copy's id (named as the location's key)."""
    event = received_event(accepted, producer, sha256, size, location)
    if not accepted.copies:
        return [event]
    ids = [c.message_id for c in accepted.copies]
    return [MessageReceived.model_validate({
        **dict(event), "message_id": c.message_id, "event_id": c.event_id,
        "rule_id": c.rule_id, "envelope_to": list(c.envelope_to), "copies": ids,
        "raw": location if c.message_id == accepted.message_id
        else location.model_copy(update={"key": accepted.message_id}),
    }) for c in accepted.copies]


def received_event(
    accepted: Accepted, producer: ProducerRef, sha256: str, size: int, location: RawLocation
) -> MessageReceived:
    return MessageReceived(
        event_id=accepted.event_id,
        occurred_at=accepted.occurred_at,
        producer=producer,
        message_id=accepted.message_id,
        envelope_from=accepted.envelope_from,
        envelope_to=list(accepted.envelope_to),
        client_ip=accepted.client_ip,
        helo=accepted.helo,
        tls=accepted.tls,
        size=size,
        sha256=sha256,
        subject=accepted.subject,
        rule_id=accepted.rule_id,
        settings_version=accepted.settings_version,
        raw=location,
        content_sha256=accepted.content_sha256,
    )
