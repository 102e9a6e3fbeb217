"""The Backup's usage, folded from its ledger; its limits from the settings.

Each Backup ledger event (`backup.retained`, `backup.removed`) carries the Backup's usage after
it, as its single writer counted. Like the quarantine ledger's, it is read twice (the ledger
topic and its mirror on the message's partition) and folded once (`copies.py`). The usage
shown is the one after the ledger's latest event by (instant, event id): the same whichever
topic a reader reached first, so live equals replay. Limits come from the settings events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from katagate.projector.canonical import micros
from katagate.schemas import (
    BackupLedgerEvent,
    Event,
    KataSettings,
    KataSettingsChanged,
    KataSettingsReset,
)


@dataclass
class BackupUsage:
    limit_bytes: int = KataSettings().backup_max_bytes
    max_age_days: int = KataSettings().backup_max_age_days
    bytes_in_use: int = 0
    copies_in_use: int = 0
    latest: tuple[int, str] | None = None  # the ledger event the usage is from

    def to_state(self) -> dict[str, Any]:
        return {"limit_bytes": self.limit_bytes, "max_age_days": self.max_age_days,
                "bytes_in_use": self.bytes_in_use, "copies_in_use": self.copies_in_use,
                "latest": None if self.latest is None else list(self.latest)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BackupUsage:
        latest = state["latest"]
        return cls(int(state["limit_bytes"]), int(state["max_age_days"]),
                   int(state["bytes_in_use"]), int(state["copies_in_use"]),
                   None if latest is None else (int(latest[0]), str(latest[1])))


def evolve(view: BackupUsage, event: Event) -> BackupUsage:
    """Updates the view in place and returns it."""
    match event:
        case KataSettingsChanged() | KataSettingsReset():
            view.limit_bytes = event.settings.backup_max_bytes
            view.max_age_days = event.settings.backup_max_age_days
        case BackupLedgerEvent():
            at = (micros(event.occurred_at), event.event_id.hex)
            if view.latest is None or at > view.latest:
                view.latest = at
                view.bytes_in_use = event.bytes_in_use
                view.copies_in_use = event.copies_in_use
    return view


def render(view: BackupUsage) -> dict[str, Any]:
    return {"bytes_in_use": view.bytes_in_use, "copies_in_use": view.copies_in_use,
            "limit_bytes": view.limit_bytes, "max_age_days": view.max_age_days}
