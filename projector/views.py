"""Every projection together: one `evolve` for all, one canonical rendering, one state format.

The views are functions of the set of events read (per-partition order aside), so a live
projector and a replay that have read the same records render the same bytes. The small views
(connection, quarantine usage, counters) live in memory and are stored as one state document;
timelines and summaries live in the `TimelineStore` on disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from katagate.projector import backup_usage, connection, counters, quarantine, rows, timelines
from katagate.projector.backup_usage import BackupUsage
from katagate.projector.canonical import document
from katagate.projector.connection import ConnectionView
from katagate.projector.copies import LedgerCopies
from katagate.projector.counters import Counters
from katagate.projector.quarantine import QuarantineView
from katagate.projector.search_filters import Search
from katagate.projector.store import TimelineStore
from katagate.schemas import Event, MailEvent, encode_event

LISTING_ROWS = {"search": rows.row, "quarantine": rows.quarantine_row,
                "backup": rows.backup_row, "queue": rows.queue_row}

STATE_FORMAT = 5
VIEW_NAMES = ("connection", "quarantine", "counters")  # replay's files
STATE_VIEWS = (*VIEW_NAMES, "backup")  # served under /state/


@dataclass
class Projections:
    connection: ConnectionView = field(default_factory=ConnectionView)
    quarantine: QuarantineView = field(default_factory=QuarantineView)
    counters: Counters = field(default_factory=Counters)
    backup: BackupUsage = field(default_factory=BackupUsage)
    copies: LedgerCopies = field(default_factory=LedgerCopies)
    store: TimelineStore = field(default_factory=TimelineStore)

    def to_state(self) -> dict[str, Any]:
        """The in-memory views; the store keeps its own rows."""
        return {
            "format": STATE_FORMAT,
            "connection": self.connection.to_state(),
            "quarantine": self.quarantine.to_state(),
            "counters": self.counters.to_state(),
            "backup": self.backup.to_state(),
            "ledger_copies_waiting": sorted(str(UUID(int=i)) for i in self.copies.waiting),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], store: TimelineStore) -> Projections:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown projection state format {state.get('format')!r}")
        return cls(
            connection=ConnectionView.from_state(state["connection"]),
            quarantine=QuarantineView.from_state(state["quarantine"]),
            counters=Counters.from_state(state["counters"]),
            backup=BackupUsage.from_state(state["backup"]),
            copies=LedgerCopies({UUID(i).int for i in state["ledger_copies_waiting"]}),
            store=store,
        )

    # -- reading -------------------------------------------------------------------

    def view(self, name: str) -> dict[str, Any]:
        if name == "connection":
            return connection.render(self.connection)
        if name == "quarantine":
            return quarantine.render(self.quarantine)
        if name == "counters":
            return counters.render(self.counters)
        if name == "backup":
            return backup_usage.render(self.backup)
        raise KeyError(name)

    def document(self, name: str) -> bytes:
        """A view as served and written: canonical JSON and a newline."""
        return document(self.view(name))

    def message(self, message_id: str) -> dict[str, Any] | None:
        return timelines.render(self.store, message_id)

    def summary(self, message_id: str) -> dict[str, Any] | None:
        found = self.store.summary(message_id)
        return None if found is None else rows.summary(message_id, found)

    def message_ids(self, after: str | None = None) -> Iterator[str]:
        return self.store.message_ids(after)

    def listing(self, after: str | None, limit: int,
                filters: dict[str, str]) -> tuple[list[dict[str, Any]], bool]:
        """A page of summaries in message id order, filtered; and whether more follow."""
        found, more = self.store.listing(after, limit, filters)
        return [rows.summary(m, summary) for m, summary in found], more

    def search(self, asked: Search, listing: str) -> dict[str, Any]:
        """A page of a listing (search_filters.LISTINGS): its rows and the next cursor."""
        found, cursor = self.store.search(asked, listing)
        render = LISTING_ROWS[listing]
        return {"messages": [render(m, summary) for m, summary in found], "next": cursor}

    def backup_copy(self, message_id: str) -> dict[str, Any] | None:
        """One Backup copy's row; None unless the message has one."""
        found = self.store.summary(message_id)
        if found is None or rows.backup_state(found) is None:
            return None
        return rows.backup_row(message_id, found)

    def close(self) -> None:
        self.store.close()


def evolve(views: Projections, event: Event, record: bytes | None = None) -> Projections:
    """Fold one event into every projection (in place; returns the same object). `record` is
    the event as read (kept in its timeline); without it the event is encoded afresh."""
    if not views.copies.first(event, record):
        return views
    views.connection = connection.evolve(views.connection, event)
    quarantine.evolve(views.quarantine, event)
    backup_usage.evolve(views.backup, event)
    counters.evolve(views.counters, event)
    if isinstance(event, MailEvent):
        for observation in views.store.add(
                event.message_id, timelines.order_key(event), event,
                record if record is not None else encode_event(event)):
            counters.observe(views.counters, observation)
    return views

