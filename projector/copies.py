"""The ledger's mirrored copies, removed before the folds.

The admission shell writes every ledger event (the KATA Quarantine's and the Backup's) twice
in one transaction: to `katagate.quarantine` and, mirrored with the same event id, to the
message's `katagate.mail` partition. A reader meets the two copies in either order, each
exactly once (it reads every record once). The first copy met is folded and its id kept; the
second is dropped and the id forgotten. So only ids whose second copy is still unread are
kept: a set bounded by how far one topic's reading runs ahead of the other, not by the length
of the log.

A reader may also keep the first copies' records (`keep_records`) and drop a second copy by
its bytes before decoding it (`second`): the mirror is the same encoding of the same event,
and equal bytes decode to an equal event, so the outcome is the one `first` would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from katagate.schemas import (
    BackupLedgerEvent,
    Event,
    LedgerEvent,
    NotificationComposed,
    NotificationHeld,
)

# Written to both topics by the admission shell, with the same event id.
MIRRORED = (LedgerEvent, BackupLedgerEvent, NotificationComposed, NotificationHeld)


@dataclass
class LedgerCopies:
    waiting: set[int] = field(default_factory=set)  # ids whose second copy is unread
    keep_records: bool = False
    # The records of the waiting ids, both ways (only with keep_records).
    _ids: dict[bytes, int] = field(default_factory=dict, repr=False)
    _records: dict[int, bytes] = field(default_factory=dict, repr=False)

    def first(self, event: Event, record: bytes | None = None) -> bool:
        """True for the first copy of a ledger event, and for every other event."""
        if not isinstance(event, MIRRORED):
            return True
        event_id = event.event_id.int
        if event_id in self.waiting:
            self.waiting.remove(event_id)
            kept = self._records.pop(event_id, None)
            if kept is not None:
                del self._ids[kept]
            return False
        self.waiting.add(event_id)
        if self.keep_records and record is not None:
            self._ids[record] = event_id
            self._records[event_id] = record
        return True

    def second(self, record: bytes) -> bool:
        """True for a record equal to a kept first copy: its second copy, now dropped."""
        event_id = self._ids.pop(record, None)
        if event_id is None:
            return False
        del self._records[event_id]
        self.waiting.remove(event_id)
        return True
