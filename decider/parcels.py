"""What apply still has to carry out, folded from `katagate.mail`: decided messages until their
terminal event, with the delivery attempts so far. Pure: times come in with the events."""

from __future__ import annotations

import heapq
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime

from katagate.schemas import (
    ActionDecided,
    BackupRemoved,
    BackupResent,
    BackupStored,
    DeliveryDeferred,
    Event,
    MessageReceived,
    NotificationComposed,
    RawLocation,
    VerdictReceived,
    terminal_outcome,
)


def is_terminal(event: Event) -> bool:
    """Every accepted message ends in exactly one of these (invariant 2 of docs/ARCHITECTURE.md)."""
    return terminal_outcome(event) is not None


@dataclass(frozen=True)
class Parcel:
    message_id: str
    partition: int
    correlation_id: uuid.UUID
    envelope_from: str
    recipients: tuple[str, ...]
    raw: RawLocation | None  # None: a notice, whose bytes are in `notice`
    sha256: str
    received_at: datetime
    decision: ActionDecided | None = None
    backup_done: bool = False
    attempts: int = 0
    first_attempt_at: datetime | None = None
    retry_at: datetime | None = None
    size: int = 0  # bytes, as received
    notice: NotificationComposed | None = None  # a notice to send with MAIL FROM:<>
    settings_version: int = 0  # the configuration the message was received under
    verdict: VerdictReceived | None = None  # for the verdict header

    @property
    def raw_key(self) -> str:
        """The id the raw chunks are keyed by: a copy of a split message shares the first's."""
        return (self.raw.key if self.raw is not None else None) or self.message_id


# Resend requests whose outcome was recorded, remembered so a redelivered one is not sent
# again: bounded, as a redelivery comes soon after the outcome or never.
RESENDS_REMEMBERED = 10_000
# Copies the Backup ledger removed, so a resend asked after the removal (a stale page, a
# forged or raced request) is not sent while the bytes await compaction (up to two days,
# eventlog/topics.py): the most recent ones, far more than two days of removals.
REMOVALS_REMEMBERED = 100_000


class Parcels:
    def __init__(self) -> None:
        self.live: dict[str, Parcel] = {}
        self._retries: list[tuple[datetime, str]] = []
        self.resends_done: OrderedDict[uuid.UUID, None] = OrderedDict()
        self.copies_removed: OrderedDict[str, str] = OrderedDict()  # message id -> cause
        # Own outputs read after the committed offset at the last restore, per message id:
        # written ahead of their batch's commit (docs/decisions/0008-apply-writes-outcomes-
        # ahead.md), they may follow a MessageReceived the loop reads again, which would
        # otherwise begin the parcel anew and carry it out again. Bounded: they lie between
        # the committed offset and the end at the restore, and leave as the loop reads them.
        self._ahead: dict[str, list[tuple[Event, int]]] = {}

    def evolve_ahead(self, event: Event, partition: int) -> None:
        """Fold an own output that lies after the committed offset, and keep it until the loop
        reads it, to apply again should its message's parcel begin anew before."""
        m = getattr(event, "message_id", None)
        if m is not None:
            self._ahead.setdefault(m, []).append((event, partition))
        self._evolve(event, partition)

    def evolve(self, event: Event, partition: int) -> None:
        m = getattr(event, "message_id", None)
        if m is None:
            return
        kept = self._ahead.get(m)
        if kept is not None:
            # The loop reads it now: the records that could begin the parcel anew lie before.
            kept[:] = [(e, p) for e, p in kept if e.event_id != event.event_id]
            if not kept:
                del self._ahead[m]
        began = self._evolve(event, partition)
        if began:
            for earlier, at in self._ahead.get(m, ()):
                self._evolve(earlier, at)

    def _evolve(self, event: Event, partition: int) -> bool:
        """Fold one event; True when it began the message's parcel (anew)."""
        m = getattr(event, "message_id", None)
        if m is None:
            return False
        parcel = self.live.get(m)
        match event:
            case BackupResent() if event.causation_id is not None:
                self.resends_done[event.causation_id] = None
                while len(self.resends_done) > RESENDS_REMEMBERED:
                    self.resends_done.popitem(last=False)
            case BackupRemoved():
                self.copies_removed[m] = event.cause
                while len(self.copies_removed) > REMOVALS_REMEMBERED:
                    self.copies_removed.popitem(last=False)
            case MessageReceived():
                self.live[m] = Parcel(
                    m, partition, event.correlation_id or event.event_id, event.envelope_from,
                    tuple(event.envelope_to), event.raw, event.sha256, event.occurred_at,
                    size=event.size, settings_version=event.settings_version,
                )
                return True
            case NotificationComposed() if parcel is None:
                self.live[m] = Parcel(m, partition, event.correlation_id or event.event_id, "",
                                      tuple(event.to), None, "", event.occurred_at,
                                      size=len(event.data), notice=event)
                return True
            case VerdictReceived() if parcel is not None and parcel.decision is None:
                self.live[m] = replace(parcel, verdict=event)
            case ActionDecided() if parcel is not None and parcel.decision is None:
                self.live[m] = replace(parcel, decision=event)
            case BackupStored() if parcel is not None:
                self.live[m] = replace(parcel, backup_done=True)
            case DeliveryDeferred() if parcel is not None:
                self.live[m] = replace(
                    parcel, attempts=event.attempt, retry_at=event.retry_at,
                    first_attempt_at=parcel.first_attempt_at or event.occurred_at,
                )
                heapq.heappush(self._retries, (event.retry_at, m))
            case _ if is_terminal(event):
                self.live.pop(m, None)
        return False

    def waiting(self, message_id: str) -> Parcel | str:
        """The parcel if its delivery was deferred and it waits for its next attempt, else
        why not (for an administrator's queue action)."""
        parcel = self.live.get(message_id)
        if parcel is None:
            return "not carried by apply: unknown here, or already at its terminal event"
        if parcel.decision is None or parcel.retry_at is None:
            return "not deferred: no delivery attempt has been deferred yet"
        return parcel

    def holds(self, message_id: str) -> bool:
        """Whether the message is still carried (received, not yet at its terminal event)."""
        return message_id in self.live

    def forget(self, partitions: set[int]) -> None:
        self.live = {m: p for m, p in self.live.items() if p.partition not in partitions}
        self._ahead = {m: kept for m, kept in self._ahead.items()
                       if not any(p in partitions for _e, p in kept)}

    def due(self, now: datetime, limit: int | None = None) -> list[Parcel]:
        """The parcels whose retry is due, earliest first; at most `limit`, the rest stay."""
        due: dict[str, Parcel] = {}
        while self._retries and self._retries[0][0] <= now and len(due) != limit:
            at, m = heapq.heappop(self._retries)
            parcel = self.live.get(m)
            # A deferral folded twice (written, then read back; or restored, then read) left
            # two equal entries: the retry is one, or the message is delivered twice.
            if parcel is not None and parcel.retry_at == at and (
                    parcel.decision is not None or parcel.notice is not None):
                due[m] = parcel
        return list(due.values())
