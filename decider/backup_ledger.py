"""The Backup ledger: which copies `katagate.backup` holds, the Backup's usage, and the pure
retention decisions — keep a stored copy, remove the oldest over the size limit, remove those
past the age limit, remove one an administrator deleted.

Kept by the quarantine's single writer beside the quarantine ledger and folded from the same
topic, so usage is rebuilt from the log alone. Age is judged against the setting in force when
the check runs, not the one a copy was stored under: lowering `backup_max_age_days` removes old
copies sooner, raising it keeps every copy longer (a retained event's `expires_at` is the expiry
as the settings stood then).
"""

from __future__ import annotations

import heapq
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from katagate.schemas import (
    BackupRemoved,
    BackupRetained,
    BackupStored,
    Event,
    KataSettings,
    ProducerRef,
    QuarantineReleased,
)
from katagate.schemas.ids import LEDGER, step_id

# Sizes of messages lately released from the quarantine: a copy's `backup.stored` carries no
# size, and comes after the release. Bounded; more than are ever between release and copy.
RECENT_SIZES = 10_000
# Removals per check at most, so that one transaction stays small after a limit is lowered.
MAX_REMOVALS = 500


@dataclass(frozen=True)
class Copy:
    message_id: str
    size: int
    stored_at: datetime
    partition: int
    chunks: int  # chunk records, each keyed `<message_id>/<index>`
    correlation_id: uuid.UUID | None


@dataclass
class BackupLedger:
    bytes_in_use: int = 0
    copies_in_use: int = 0
    held: dict[str, Copy] = field(default_factory=dict)
    recent_sizes: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _by_age: list[tuple[datetime, str]] = field(default_factory=list)  # heap, stale entries

    def evolve(self, event: Event) -> None:
        """Idempotent: an event seen twice (the ledger and its mirror) counts once."""
        match event:
            case QuarantineReleased():
                self.recent_sizes[event.message_id] = event.size
                self.recent_sizes.move_to_end(event.message_id)
                while len(self.recent_sizes) > RECENT_SIZES:
                    self.recent_sizes.popitem(last=False)
            case BackupRetained() if event.message_id not in self.held:
                self.held[event.message_id] = Copy(
                    event.message_id, event.size, event.stored_at, event.location.partition,
                    len(event.location.offsets), event.correlation_id)
                heapq.heappush(self._by_age, (event.stored_at, event.message_id))
                self.bytes_in_use += event.size
                self.copies_in_use += 1
                self.recent_sizes.pop(event.message_id, None)
            case BackupRemoved() if event.message_id in self.held:
                self.bytes_in_use -= self.held.pop(event.message_id).size
                self.copies_in_use -= 1

    def oldest(self) -> Copy | None:
        while self._by_age:
            stored_at, message_id = self._by_age[0]
            copy = self.held.get(message_id)
            if copy is not None and copy.stored_at == stored_at:
                return copy
            heapq.heappop(self._by_age)  # removed already
        return None

    def size_of(self, stored: BackupStored) -> int:
        """The copy's size: the message's, as the quarantine held it; else the most its chunks
        can hold (a copy stored long after its release, beyond RECENT_SIZES)."""
        known = self.recent_sizes.get(stored.message_id)
        if known is not None:
            return known
        return len(stored.location.offsets) * stored.location.chunk_bytes


def retain(ledger: BackupLedger, stored: BackupStored, settings: KataSettings, now: datetime,
           producer: ProducerRef) -> BackupRetained | None:
    """The ledger takes a stored copy in (None: it holds it already)."""
    if stored.message_id in ledger.held:
        return None
    size = ledger.size_of(stored)
    max_age = settings.backup_max_age_days
    return BackupRetained(
        event_id=step_id(LEDGER, stored.message_id, "backup-retained"), occurred_at=now,
        producer=producer, message_id=stored.message_id,
        correlation_id=stored.correlation_id, causation_id=stored.event_id,
        size=size, bytes_in_use=ledger.bytes_in_use + size,
        copies_in_use=ledger.copies_in_use + 1, stored_at=stored.occurred_at,
        location=stored.location, sha256=stored.sha256, max_age_days=max_age,
        expires_at=stored.occurred_at + timedelta(days=max_age),
        limit_bytes=settings.backup_max_bytes,
    )


def remove(ledger: BackupLedger, copy: Copy, cause: str, settings: KataSettings, now: datetime,
           producer: ProducerRef, actor: str | None = None,
           caused_by: uuid.UUID | None = None) -> BackupRemoved:
    return BackupRemoved(
        event_id=step_id(LEDGER, copy.message_id, "backup-removed"), occurred_at=now,
        producer=producer, message_id=copy.message_id, correlation_id=copy.correlation_id,
        causation_id=caused_by, size=copy.size, bytes_in_use=ledger.bytes_in_use - copy.size,
        copies_in_use=ledger.copies_in_use - 1, cause=cause, actor=actor,
        max_age_days=settings.backup_max_age_days, limit_bytes=settings.backup_max_bytes,
    )


def expire(ledger: BackupLedger, settings: KataSettings, now: datetime,
           producer: ProducerRef) -> list[tuple[Copy, BackupRemoved]]:
    """Copies past the age limit in force, then the oldest while over the size limit, each with
    its removal; each removal evolves the ledger, so usage after each is exact."""
    removed: list[tuple[Copy, BackupRemoved]] = []
    max_age = timedelta(days=settings.backup_max_age_days)
    while len(removed) < MAX_REMOVALS and (copy := ledger.oldest()) is not None:
        if copy.stored_at + max_age <= now:
            cause = "expired_age"
        elif ledger.bytes_in_use > settings.backup_max_bytes:
            cause = "expired_size"
        else:
            break
        event = remove(ledger, copy, cause, settings, now, producer)
        ledger.evolve(event)
        removed.append((copy, event))
    return removed


def delete(ledger: BackupLedger, message_id: str, actor: str, request: uuid.UUID,
           settings: KataSettings, now: datetime, producer: ProducerRef) -> BackupRemoved | None:
    """An administrator's delete of a held copy (None: not held, nothing to do)."""
    copy = ledger.held.get(message_id)
    if copy is None:
        return None
    return remove(ledger, copy, "deleted_by_admin", settings, now, producer, actor, request)
