"""The KATA quarantine ledger: what is held, against both limits, and the pure admission and
release decisions. Only the single admission writer appends to it, so the limits hold exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from decider.backup_ledger import BackupLedger
from decider.notifier import NotifierBook
from schemas import (
    ControlState,
    Event,
    MessageReceived,
    ProducerRef,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineReleased,
    Rule,
)
from schemas.ids import LEDGER, step_id

# The product quarantines no message over 200 MB, whatever the limits say.
MAX_MESSAGE_BYTES = 200 * 1024 * 1024


@dataclass
class Ledger:
    bytes_in_use: int = 0
    messages_in_use: int = 0
    held: dict[str, int] = field(default_factory=dict)  # message id -> size
    # The Backup's ledger lives in the same topic, kept by the same single writer.
    backup: BackupLedger = field(default_factory=BackupLedger)
    # The notifier's book is kept in the same topic too (decider/notifier.py).
    notifier: NotifierBook = field(default_factory=NotifierBook)

    def evolve(self, event: Event) -> None:
        """Idempotent: an event seen twice (the ledger and its mirror) counts once."""
        self.backup.evolve(event)
        self.notifier.evolve(event)
        match event:
            case QuarantineAdmitted() if event.message_id not in self.held:
                self.held[event.message_id] = event.size
                self.bytes_in_use += event.size
                self.messages_in_use += 1
            case QuarantineReleased() if event.message_id in self.held:
                self.bytes_in_use -= self.held.pop(event.message_id)
                self.messages_in_use -= 1


def denial_reason(ledger: Ledger, size: int, control: ControlState, rule: Rule) -> str | None:
    if not control.protection_enabled:
        return "kata_disabled"
    if not rule.kata.enabled:
        return "rule_kata_disabled"
    if control.connection != "connected":
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
) -> QuarantineAdmitted | QuarantineDenied:
    settings = control.settings
    common = {
        "event_id": step_id(LEDGER, received.message_id, "admission"), "occurred_at": now,
        "producer": producer, "message_id": received.message_id,
        "correlation_id": received.correlation_id or received.event_id,
        "causation_id": received.event_id, "size": received.size,
        "limit_bytes": settings.quarantine_max_bytes,
        "limit_messages": settings.quarantine_max_messages,
    }
    reason = denial_reason(ledger, received.size, control, rule)
    if reason is not None:
        return QuarantineDenied(
            reason=reason, bytes_in_use=ledger.bytes_in_use,
            messages_in_use=ledger.messages_in_use, **common,
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
