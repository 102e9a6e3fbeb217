"""The admission shell: the single writer of `katagate.quarantine` (the quarantine's ledger and
the Backup's, `decider/backup_ledger.py`).

Only the elected owner runs it. It reads every `katagate.mail` partition itself (manual
assignment, one fixed transactional.id that fences a previous owner), starts from the ledger
folded from `katagate.quarantine` — which its transactions keep consistent with its committed
mail offsets — and writes each ledger event to the quarantine topic and, mirrored, to the
message's own partition.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from katagate.decider.backup_ledger import Copy, delete, expire, retain
from katagate.decider.history import ControlHistory, evolve_history
from katagate.decider.ledger import (
    Ledger,
    admit,
    admit_waiting,
    end_hold,
    release,
    usage_figures,
    usage_record,
)
from katagate.decider.notifier import (
    Notifier,
    Summaries,
    connection_occurrence,
    occurrences,
    usage_occurrence,
)
from katagate.eventlog.decoded import decoded, remember
from katagate.eventlog.errors import KafkaUnavailable, ReadStalled
from katagate.eventlog.folded import FoldedTopic, fold_to_end
from katagate.eventlog.handler import Handler, Poison
from katagate.eventlog.raw import tombstones
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    ActionDecided,
    BackupDeleteRequested,
    BackupRemoved,
    BackupStored,
    ControlState,
    Event,
    ForcedDelete,
    ForcedRelease,
    KataSettings,
    LateVerdictReceived,
    MessageReceived,
    NotificationSettings,
    ProducerRef,
    QuarantineAdmitted,
    SchemaError,
)

log = logging.getLogger(__name__)
# How often the Backup's age limit is checked: copies are kept for days, not seconds.
EXPIRY_CHECK_S = 10.0


def fold_ledger(kafka: KafkaSettings, timeout_s: float = 60.0) -> Ledger:
    def evolve(ledger_: Ledger, event: Event) -> Ledger:
        ledger_.evolve(event)
        return ledger_

    try:
        return fold_to_end(kafka, TopicNames(kafka.topic_prefix).quarantine, Ledger(), evolve,
                           timeout_s)
    except ReadStalled as exc:
        # Kafka trouble (seen: a controller quorum busy for half a minute after a node died),
        # not a bug: the part restarts and reads it again.
        raise KafkaUnavailable(
            f"the quarantine ledger could not be read to its end: {exc}") from exc


class Admission(Handler):
    def __init__(
        self,
        kafka: KafkaSettings,
        control: FoldedTopic[ControlHistory],
        producer: ProducerRef,
        clock: Callable[[], datetime],
        from_domain: str = "localhost",
    ) -> None:
        self._kafka = kafka
        self._names = TopicNames(kafka.topic_prefix)
        self._control = control
        self._producer = producer
        self._clock = clock
        self.ledger = fold_ledger(kafka)
        self._next_expiry_check = 0.0
        # The usage last written to `katagate.quarantine.usage`; None: write it at the next
        # tick (the election: an upgraded log gets its first record, ingest its current one).
        self._usage_written: tuple[int, ...] | None = None
        # The notifier (decider/notifier.py): its book is folded into the ledger; what it
        # names of messages is remembered from the `mail.received` read here.
        self._notifier = Notifier(producer, from_domain)
        self._summaries = Summaries()
        self._connection = control.value.current.connection
        log.info("quarantine ledger: %d messages, %d bytes held, %d waiting; Backup: %d copies, "
                 "%d bytes", self.ledger.messages_in_use, self.ledger.bytes_in_use,
                 len(self.ledger.waiting),
                 self.ledger.backup.copies_in_use, self.ledger.backup.bytes_in_use)

    def decide(self, record: Consumed) -> list[Outgoing]:
        try:
            event = decoded(record.value or b"")
        except SchemaError as exc:
            raise Poison(str(exc)) from exc
        now = self._clock()
        produced: list[Event] = []
        removed: list[tuple[Copy, BackupRemoved]] = []
        match event:
            case MessageReceived():
                self._summaries.remember(event)
                if event.message_id in self.ledger.held or event.message_id in self.ledger.waiting:
                    return []  # redelivered after a crash that kept its admission
                control = self._control_at_least(event.settings_version)
                rule = control.rule(event.rule_id)
                produced.append(admit(self.ledger, event, control, rule, now, self._producer))
            case ActionDecided() | ForcedRelease() | ForcedDelete():
                cause = ("forced_release" if isinstance(event, ForcedRelease) else
                         "deleted_by_admin" if isinstance(event, ForcedDelete)
                         else "action_applied")
                if (done := release(self.ledger, event.message_id, cause, event, now,
                                    self._producer)) is not None:
                    produced.append(done)
                elif (ended := end_hold(self.ledger, event.message_id, cause, event, now,
                                        self._producer)) is not None:
                    produced.append(ended)
                if isinstance(event, ActionDecided):
                    produced += self._notify(event, now)
            case BackupStored():
                settings = self._settings_now()
                if (kept := retain(self.ledger.backup, event, settings, now,
                                   self._producer)) is None:
                    return []  # redelivered after a crash that kept its retention
                self.ledger.evolve(kept)
                # Over the size limit now: the oldest copies go (this one too, if it alone is).
                return [*self._ledger_out(kept),
                        *self._removals(expire(self.ledger.backup, settings, now,
                                               self._producer))]
            case BackupDeleteRequested():
                copy = self.ledger.backup.held.get(event.message_id)
                if copy is None:
                    log.info("%s: Backup delete by %s: no copy held; nothing to do",
                             event.message_id, event.actor)
                    return []
                gone = delete(self.ledger.backup, event.message_id, event.actor,
                              event.event_id, self._settings_now(), now, self._producer)
                assert gone is not None  # noqa: S101 - the copy is held, checked above
                removed.append((copy, gone))
            case LateVerdictReceived():
                produced += self._notify(event, now)
            case _:
                return []
        notices: list[Event] = []
        for item in produced:
            self.ledger.evolve(item)
            if isinstance(item, QuarantineAdmitted):
                notices += self._notify_usage(item, now)
        # Room freed (or a message held): the waiting list goes in, oldest first, as it fits.
        for item in self._admit_waiting(now):
            produced.append(item)
            if isinstance(item, QuarantineAdmitted):
                notices += self._notify_usage(item, now)
        produced += notices  # folded into the notifier's book as they were made
        # The usage record is not written here: tick() writes it once per transaction, after
        # the whole batch (a compacted topic keeps only the newest; one per change cost a record
        # and a marker per admission and per release).
        return [out for item in produced for out in self._ledger_out(item)] + self._removals(
            removed, evolve=True)

    def _admit_waiting(self, now: datetime) -> list[Event]:
        if not self.ledger.waiting:
            return []
        self._control.pump(0)
        admitted = admit_waiting(self.ledger, self._control.value.current, now, self._producer)
        for item in admitted:
            self.ledger.evolve(item)
        return list(admitted)

    def tick(self) -> list[Outgoing]:
        """The notifier's timers (the connection's state, the digest), then Backup retention
        by age (and by size, for a limit lowered since the last copy); held mail admitted when
        the limits were raised."""
        notices = self._notify_timers(self._clock())
        out = [o for item in notices for o in self._ledger_out(item)]
        out += self._usage_out(self._clock())  # at election, and after a change of the limits
        if time.monotonic() < self._next_expiry_check:
            return out
        self._next_expiry_check = time.monotonic() + EXPIRY_CHECK_S
        now = self._clock()
        admitted = self._admit_waiting(now)
        admitted += [n for item in admitted if isinstance(item, QuarantineAdmitted)
                     for n in self._notify_usage(item, now)]
        waiting = [o for item in admitted for o in self._ledger_out(item)]
        waiting += self._usage_out(now) if admitted else []
        return out + waiting + self._removals(expire(self.ledger.backup, self._settings_now(),
                                                     self._clock(), self._producer))

    # -- notifications (decider/notifier.py decides; these feed it) -----------------------

    def _notifications(self) -> NotificationSettings:
        self._control.pump(0)
        return self._control.value.current.notifications

    def _notify(self, event: Event, now: datetime) -> list[Event]:
        def notices(settings: NotificationSettings) -> list[Event]:
            found = occurrences(event, self._summaries.get(getattr(event, "message_id", "")),
                                settings)
            return self._notifier.notices(self.ledger.notifier, found, event, settings, now)
        return self._guarded(notices)

    def _notify_usage(self, admitted: QuarantineAdmitted, now: datetime) -> list[Event]:
        def notices(settings: NotificationSettings) -> list[Event]:
            found = usage_occurrence(self.ledger.notifier, admitted, settings)
            return self._notifier.notices(self.ledger.notifier, [found] if found else [],
                                          admitted, settings, now)
        return self._guarded(notices)

    def _notify_timers(self, now: datetime) -> list[Event]:
        def notices(settings: NotificationSettings) -> list[Event]:
            state, self._connection = self._connection, self._control.value.current.connection
            found = connection_occurrence(self.ledger.notifier, state, self._connection,
                                          settings)
            told = self._notifier.notices(self.ledger.notifier, [found] if found else [], None,
                                          settings, now)
            return told + self._notifier.digest(self.ledger.notifier, settings, now)
        return self._guarded(notices)

    def _guarded(self, notices: Callable[[NotificationSettings], list[Event]]) -> list[Event]:
        """The notices, or none: a notifier's failure must never stop the ledger's record
        (a release not written would hold its quarantine slot for ever)."""
        try:
            return notices(self._notifications())
        except Exception:
            log.exception("notifier: no notice for this event")
            return []

    def _usage_out(self, now: datetime) -> list[Outgoing]:
        """The usage for ingest's tempfail, in the transaction of the ledger events that
        changed it; not written again while it is unchanged."""
        self._control.pump(0)
        record = usage_record(self.ledger, self._control.value.current, uuid.uuid4(), now,
                              self._producer)
        if usage_figures(record) == self._usage_written:
            return []
        self._usage_written = usage_figures(record)
        return [Outgoing.event(self._names.quarantine_usage, record)]

    def _ledger_out(self, item: Event) -> list[Outgoing]:
        # The same record on both topics: encoded once, and read back from the mail topic
        # by the decider's parts without decoding.
        ledger = Outgoing.event(self._names.quarantine, item)
        remember(ledger.value, item)
        return [ledger, dataclasses.replace(ledger, topic=self._names.mail)]

    def _removals(self, removed: list[tuple[Copy, BackupRemoved]],
                  evolve: bool = False) -> list[Outgoing]:
        """Each removal recorded, and its copy's chunks tombstoned in the same transaction."""
        out: list[Outgoing] = []
        for copy, event in removed:
            if evolve:
                self.ledger.evolve(event)
            log.info("%s: Backup copy removed (%s)", copy.message_id, event.cause)
            out += self._ledger_out(event)
            out += tombstones(self._names.backup, copy.message_id, copy.partition, copy.chunks)
        return out

    def _settings_now(self) -> KataSettings:
        self._control.pump(0)
        return self._control.value.current.settings

    def _control_at_least(self, version: int) -> ControlState:
        """The configuration the message was received under (or newer): wait briefly for the
        control view to catch up rather than admit under settings older than the message's."""
        deadline = time.monotonic() + 5.0
        self._control.pump(0)
        while self._control.value.current.version < version and time.monotonic() < deadline:
            self._control.pump(0.1)
        return self._control.value.current

    def aborted(self) -> None:
        # The ledger was changed eagerly for the aborted batch: read it again from the log.
        self.ledger = fold_ledger(self._kafka)
        self._usage_written = None  # the aborted batch's usage record was not written


def new_control_view(kafka: KafkaSettings) -> FoldedTopic[ControlHistory]:
    return FoldedTopic(kafka, TopicNames(kafka.topic_prefix).control, ControlHistory(),
                       evolve_history)
