"""The ledger's mirrored copies, removed before the folds.

The admission shell writes every ledger event (the KATA Quarantine's and the Backup's) twice
in one transaction: to `katagate.quarantine` and, mirrored with the same event id, to the
message's `katagate.mail` partition. A reader meets the two copies in either order, each
exactly once (it reads every record once). The first copy met is folded and its id kept; the
second is dropped and the id forgotten. So only ids whose second copy is still unread are
kept: a set bounded by how far one topic's reading runs ahead of the other, not by the length
of the log.
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

    def first(self, event: Event) -> bool:
        """True for the first copy of a ledger event, and for every other event."""
        if not isinstance(event, MIRRORED):
            return True
        event_id = event.event_id.int
        if event_id in self.waiting:
            self.waiting.remove(event_id)
            return False
        self.waiting.add(event_id)
        return True
