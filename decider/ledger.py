"""The KATA quarantine ledger: what is held, against both limits, the waiting list of held mail
(`on_unavailable` = hold), and the pure admission and release decisions. Only the single
admission writer appends to it, so the limits hold exactly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from katagate.decider.backup_ledger import BackupLedger
from katagate.decider.notifier import NotifierBook
from katagate.schemas import (
    ControlState,
    Event,
    MessageReceived,
    ProducerRef,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineHeld,
    QuarantineHoldEnded,
    QuarantineReleased,
    QuarantineUsageRecorded,
    Rule,
    on_unavailable_of,
)
from katagate.schemas.ids import LEDGER, step_id

# The product quarantines no message over 200 MB, whatever the limits say.
MAX_MESSAGE_BYTES = 200 * 1024 * 1024


# How many held messages may wait for room (on_unavailable = hold). The list holds no bytes,
# but each message waiting is state in every stage and mail kept unscanned: beyond it a message
# is denied at once (`waiting_list_full`) and its `hold_outcome` decides it.
MAX_WAITING = 10_000


@dataclass(frozen=True)
class Waiting:
    """A held message outside the quarantine, as its `quarantine.held` recorded it."""

    message_id: str
    size: int
    rule_id: str | None
    settings_version: int
    correlation_id: uuid.UUID | None
    causation_id: uuid.UUID


@dataclass
class Ledger:
    bytes_in_use: int = 0
    messages_in_use: int = 0
    held: dict[str, int] = field(default_factory=dict)  # message id -> size
    # Held mail waiting for room, oldest first (insertion order: the log's order).
    waiting: dict[str, Waiting] = field(default_factory=dict)
    # The Backup's ledger lives in the same topic, kept by the same single writer.
    backup: BackupLedger = field(default_factory=BackupLedger)
    # The notifier's book is kept in the same topic too (decider/notifier.py).
    notifier: NotifierBook = field(default_factory=NotifierBook)

    def evolve(self, event: Event) -> None:
        """Idempotent: an event seen twice (the ledger and its mirror) counts once."""
        self.backup.evolve(event)
        self.notifier.evolve(event)
        match event:
            case QuarantineHeld() if event.message_id not in self.held:
                self.waiting.setdefault(event.message_id, Waiting(
                    event.message_id, event.size, event.rule_id, event.settings_version,
                    event.correlation_id, event.event_id))
            case QuarantineHoldEnded():
                self.waiting.pop(event.message_id, None)
        match event:
            case QuarantineAdmitted() if event.message_id not in self.held:
                self.waiting.pop(event.message_id, None)
                self.held[event.message_id] = event.size
                self.bytes_in_use += event.size
                self.messages_in_use += 1
            case QuarantineReleased() if event.message_id in self.held:
                self.bytes_in_use -= self.held.pop(event.message_id)
                self.messages_in_use -= 1


def denial_reason(ledger: Ledger, size: int, control: ControlState, rule: Rule,
                  keep: bool = False) -> str | None:
    """Why the message cannot go into the quarantine now. `keep` (its rule's on_unavailable is
    not skip): a message is admitted while KATA is not connected, so it is scanned once the
    connection is back. KATA protection switched off is a choice, not unavailability."""
    if not control.protection_enabled:
        return "kata_disabled"
    if not rule.kata.enabled:
        return "rule_kata_disabled"
    if control.connection != "connected" and not keep:
        return "not_connected"
    if size > MAX_MESSAGE_BYTES:
        return "too_large"
    if ledger.bytes_in_use + size > control.settings.quarantine_max_bytes:
        return "size_limit"
    if ledger.messages_in_use + 1 > control.settings.quarantine_max_messages:
        return "count_limit"
    return None


def admit(
    ledger: Ledger, received: MessageReceived, control: ControlState, rule: Rule,
    now: datetime, producer: ProducerRef,
) -> QuarantineAdmitted | QuarantineDenied | QuarantineHeld:
    """Admitted, denied (decisions then Skip it, or under hold apply `hold_outcome`), or, for
    a rule that keeps what KATA cannot take now (hold; tempfail past its 250), held: it waits
    outside for room, behind every message already waiting."""
    settings = control.settings
    keep = on_unavailable_of(control, rule) != "skip"
    reason = denial_reason(ledger, received.size, control, rule, keep)
    if keep and ledger.waiting and reason is None:
        reason = "count_limit" if ledger.messages_in_use >= settings.quarantine_max_messages \
            else "size_limit"  # those ahead of it wait for room: so does it
    waits = keep and reason in ("size_limit", "count_limit") \
        and received.size <= settings.quarantine_max_bytes
    full = waits and len(ledger.waiting) >= MAX_WAITING
    if waits and not full:
        return QuarantineHeld(
            event_id=step_id(LEDGER, received.message_id, "held"), occurred_at=now,
            producer=producer, message_id=received.message_id,
            correlation_id=received.correlation_id or received.event_id,
            causation_id=received.event_id, size=received.size,
            bytes_in_use=ledger.bytes_in_use, messages_in_use=ledger.messages_in_use,
            reason=reason, rule_id=received.rule_id,
            settings_version=received.settings_version,
            response_timeout_s=settings.response_timeout_s,
            deadline_at=now + timedelta(seconds=settings.response_timeout_s),
            limit_bytes=settings.quarantine_max_bytes,
            limit_messages=settings.quarantine_max_messages, waiting=len(ledger.waiting) + 1,
        )
    common = {
        "event_id": step_id(LEDGER, received.message_id, "admission"), "occurred_at": now,
        "producer": producer, "message_id": received.message_id,
        "correlation_id": received.correlation_id or received.event_id,
        "causation_id": received.event_id, "size": received.size,
        "limit_bytes": settings.quarantine_max_bytes,
        "limit_messages": settings.quarantine_max_messages,
    }
    if reason is not None:
        return QuarantineDenied(
            reason=reason, bytes_in_use=ledger.bytes_in_use,
            messages_in_use=ledger.messages_in_use, waiting_list_full=full, **common,
        )
    return QuarantineAdmitted(
        rule_id=received.rule_id, settings_version=received.settings_version,
        response_timeout_s=settings.response_timeout_s,
        deadline_at=now + timedelta(seconds=settings.response_timeout_s),
        bytes_in_use=ledger.bytes_in_use + received.size,
        messages_in_use=ledger.messages_in_use + 1, **common,
    )


def release(
    ledger: Ledger, message_id: str, cause: str, caused_by: Event, now: datetime,
    producer: ProducerRef,
) -> QuarantineReleased | None:
    size = ledger.held.get(message_id)
    if size is None:
        return None
    return QuarantineReleased(
        event_id=step_id(LEDGER, message_id, "released"), occurred_at=now, producer=producer,
        message_id=message_id, correlation_id=getattr(caused_by, "correlation_id", None),
        causation_id=caused_by.event_id, size=size,
        cause=cause,
        bytes_in_use=ledger.bytes_in_use - size, messages_in_use=ledger.messages_in_use - 1,
    )


def admit_waiting(ledger: Ledger, control: ControlState, now: datetime,
                  producer: ProducerRef) -> list[QuarantineAdmitted]:
    """Held messages admitted as room frees up, oldest first; the first that does not fit stops
    the rest (no overtaking), whatever the connection (they are kept to be scanned)."""
    settings = control.settings
    used_bytes, used_messages = ledger.bytes_in_use, ledger.messages_in_use
    admitted: list[QuarantineAdmitted] = []
    for w in ledger.waiting.values():
        if (used_messages + 1 > settings.quarantine_max_messages
                or used_bytes + w.size > settings.quarantine_max_bytes):
            break
        used_bytes, used_messages = used_bytes + w.size, used_messages + 1
        admitted.append(QuarantineAdmitted(
            event_id=step_id(LEDGER, w.message_id, "admission"), occurred_at=now,
            producer=producer, message_id=w.message_id, correlation_id=w.correlation_id,
            causation_id=w.causation_id, size=w.size, rule_id=w.rule_id,
            settings_version=w.settings_version, response_timeout_s=settings.response_timeout_s,
            deadline_at=now + timedelta(seconds=settings.response_timeout_s),
            bytes_in_use=used_bytes, messages_in_use=used_messages,
            limit_bytes=settings.quarantine_max_bytes,
            limit_messages=settings.quarantine_max_messages,
        ))
    return admitted


def end_hold(ledger: Ledger, message_id: str, cause: str, caused_by: Event, now: datetime,
             producer: ProducerRef) -> QuarantineHoldEnded | None:
    """A waiting message decided before it was admitted leaves the waiting list."""
    waiting = ledger.waiting.get(message_id)
    if waiting is None:
        return None
    return QuarantineHoldEnded(
        event_id=step_id(LEDGER, message_id, "hold-ended"), occurred_at=now, producer=producer,
        message_id=message_id, correlation_id=waiting.correlation_id,
        causation_id=caused_by.event_id, size=waiting.size, cause=cause,
        bytes_in_use=ledger.bytes_in_use, messages_in_use=ledger.messages_in_use,
        waiting=len(ledger.waiting) - 1,
    )


def usage_record(ledger: Ledger, control: ControlState, event_id: uuid.UUID, now: datetime,
                 producer: ProducerRef) -> QuarantineUsageRecorded:
    """The usage as ingest reads it (`katagate.quarantine.usage`, schemas/usage.py)."""
    return QuarantineUsageRecorded(
        event_id=event_id, occurred_at=now, producer=producer,
        bytes_in_use=ledger.bytes_in_use, messages_in_use=ledger.messages_in_use,
        limit_bytes=control.settings.quarantine_max_bytes,
        limit_messages=control.settings.quarantine_max_messages, waiting=len(ledger.waiting))


def usage_figures(record: QuarantineUsageRecorded) -> tuple[int, ...]:
    """What a usage record says: an equal one need not be written again."""
    return (record.bytes_in_use, record.messages_in_use, record.limit_bytes,
            record.limit_messages, record.waiting)
