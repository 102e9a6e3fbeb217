"""Apply's shell: carries out each decided action — Backup copy, deliver (with the subject tag),
discard, NDR — and records the outcome `decider/outcomes.py` names; a stateful handler of the
transactional loop over `katagate.mail`, whose deferred deliveries are timers restored from the
log. Also administrators' requests: a Backup copy resent (`decider/backup_resend.py`), retry,
bounce or delete of a deferred message. Each job writes its outcome itself as it ends and waits
for the acknowledgement (`eventlog/write_ahead.py`); the loop's transaction holds the offsets. A
crash repeats an effect only between the next hop's reply and that acknowledgement, and a
restart folds what was written ahead (docs/decisions/0008-apply-writes-outcomes-ahead.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial

from katagate.decider import outcomes
from katagate.decider.backup_resend import disarm_marks, location_problem, mark_released, resent
from katagate.decider.delivery_budget import DeliveryBudget
from katagate.decider.history import ControlHistory
from katagate.decider.mail_fold import MailFold
from katagate.decider.metrics import REPLY_TO_RECORD
from katagate.decider.ndr import build_ndr, reject_reason, should_send_ndr
from katagate.decider.next_hop_gate import NextHopGate
from katagate.decider.next_hop_tls import next_hop_tls
from katagate.decider.outcomes import Effects, Recorded
from katagate.decider.parcels import Parcel, Parcels
from katagate.decider.settings import DeciderSettings
from katagate.decider.smtp_out import DeliveryOutcome, SessionCache, deliver
from katagate.decider.subject_tag import tag_subject
from katagate.decider.verdict_header import HeaderEdit, for_delivery, strip_fields
from katagate.eventlog.drain import Drain, NotCarriedOut, carried_out
from katagate.eventlog.folded import FoldedTopic
from katagate.eventlog.handler import Poison
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.raw import RawReaders, RawUnavailable, RawWant, backup_chunks, prefetch
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.eventlog.write_ahead import WriteAhead, WriteAheadFailed
from katagate.schemas import (
    ActionDecided,
    BackupResendRequested,
    BackupResent,
    BackupStored,
    DeliveryDeferred,
    DeliveryFailed,
    Event,
    MessageDelivered,
    MessageDiscarded,
    NdrSent,
    NdrSuppressed,
    NotificationComposed,
    ProducerRef,
    QueueActionRequested,
    RawLocation,
)

log = logging.getLogger(__name__)
DECIDER = PRINCIPALS["decider"]


class Apply(MailFold):
    # What apply records of what it did; after a restart a retry timer must not do it again.
    own_outputs = (BackupResent, BackupStored, DeliveryDeferred, DeliveryFailed,
                   MessageDelivered, MessageDiscarded, NdrSent, NdrSuppressed)
    writes_ahead = True  # each job's outcome, as it ends (eventlog/write_ahead.py)

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: DeciderSettings,
        control: FoldedTopic[ControlHistory],
        producer: ProducerRef,
        clock: Callable[[], datetime],
        ahead: WriteAhead,
        drain: Drain | None = None,
    ) -> None:
        self.parcels = Parcels()
        # A stop's deadline: past it no delivery begins (eventlog/drain.py).
        self._drain = drain or Drain(settings.drain_timeout_s)
        self._names = TopicNames(kafka.topic_prefix)
        super().__init__(self.parcels, self._names.mail)
        self._settings = settings
        self._control = control
        self._clock = clock
        self._effects = Effects(
            producer=producer, next_hop=f"{settings.next_hop_host}:{settings.next_hop_port}",
            retry_first=timedelta(seconds=settings.retry_first_s),
            retry_period=timedelta(seconds=settings.retry_period_s))
        self._readers = RawReaders(kafka)  # one reader of raw chunks per carrying-out thread
        # Each job's outcome (and a Backup copy's chunks) written ahead of the transaction.
        self._ahead = ahead
        # Per carrying-out thread: when its job's first reply from the next hop came.
        self._replied = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=settings.delivery_concurrency,
                                        thread_name_prefix="apply")
        self._budget = DeliveryBudget(settings.delivery_budget_bytes)
        self.sessions = SessionCache()  # connections to the next hop, RSET between messages
        # A cohort of connection failures suspends the next hop until a first retry is due.
        self._gate = NextHopGate(self._effects.next_hop, settings.delivery_concurrency,
                                 settings.retry_first_s)
        self._beat: Callable[[float], None] = lambda _blocking_s: None
        # One TLS context for every delivery (and the cache's key): loaded once.
        self._tls = next_hop_tls(settings.next_hop_tls_level, settings.next_hop_tls_ca_file,
                                 settings.next_hop_tls_name)

    def decide_batch(self, records: Sequence[Consumed]) -> list[Sequence[Outgoing] | Exception]:
        """The batch's records folded in order, then its decided messages and administrators'
        requests carried out concurrently; one result per record."""
        results: list[Sequence[Outgoing] | Exception] = []
        decided: list[tuple[int, Parcel, int]] = []
        work: list[tuple[int, int, Callable[[], list[Event]]]] = []
        acted_on: set[str] = set()  # one queue action per message and batch: never two at once
        for index, record in enumerate(records):
            try:
                event = self.read(record)
            except Poison as exc:
                results.append(exc)
                continue
            self.fold(event, record)
            results.append([])
            if isinstance(event, ActionDecided):
                parcel = self.parcels.live.get(event.message_id)
                if parcel is not None and parcel.decision is not None and parcel.attempts == 0:
                    decided.append((index, parcel, record.partition))
            elif isinstance(event, NotificationComposed):
                notice = self.parcels.live.get(event.message_id)
                if notice is not None and notice.notice is not None and notice.attempts == 0:
                    work.append((index, record.partition, partial(self._send_notice, notice)))
            elif isinstance(event, BackupResendRequested):
                if event.event_id in self.parcels.resends_done:
                    log.info("%s: resend %s was carried out already", event.message_id,
                             event.event_id)
                else:
                    work.append((index, record.partition, partial(self._resend, event)))
            elif isinstance(event, QueueActionRequested):
                job = self._queue_job(event, acted_on)
                if job is not None:
                    work.append((index, record.partition, job))
        # Messages decided together were received together: one pass reads their bytes.
        ahead = prefetch(self._readers.mine(), [
            (RawWant(p.raw.topic, p.raw.partition, p.raw.offsets, p.raw_key, p.sha256), p.size)
            for _i, p, _part in decided if p.raw is not None])
        work += [(index, partition, partial(self._carry_out, parcel, ahead.get(parcel.raw_key)))
                 for index, parcel, partition in decided]
        # The pool begins jobs in this order, so those not begun by the deadline are a suffix:
        # on each partition the batch is committed up to the first (eventlog/drain.py).
        done = list(self._pool.map(partial(carried_out, self._drain),
                                   [partial(self._written, job) for _i, _p, job in work]))
        failed = next((o for o in done if isinstance(o, WriteAheadFailed)), None)
        if failed is not None:  # the loop aborts the batch and rebuilds from what was written
            raise failed
        for (index, partition, _job), outcome in zip(work, done, strict=True):
            if isinstance(outcome, Exception):
                results[index] = outcome
            else:  # written ahead: into the state, nothing more for the transaction
                self.fold_written(outcome, partition)
        if (left := sum(isinstance(r, NotCarriedOut) for r in results)):
            log.warning("the stop's drain of %.0f s ran out: %d of this batch's deliveries "
                        "and requests were not begun; they are carried out at the next start",
                        self._drain.timeout_s, left)
        return results

    def tick(self) -> list[Outgoing]:
        """Retries due, a few of the pool's waves at a time, written ahead as a batch's jobs;
        one not begun by a stop's deadline is due at the next start."""
        self.sessions.sweep()
        due = self.parcels.due(self._clock(), limit=2 * self._settings.delivery_concurrency)
        done = list(self._pool.map(partial(carried_out, self._drain), [
            partial(self._written, partial(self._carry_out, parcel)) for parcel in due]))
        for parcel, outcome in zip(due, done, strict=True):
            if not isinstance(outcome, Exception):
                self.fold_written(outcome, parcel.partition)
        if (error := next((o for o in done if isinstance(o, Exception)
                           and not isinstance(o, NotCarriedOut)), None)) is not None:
            raise error
        return []

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.sessions.close()
        self._readers.close()

    def fold_ahead(self, event: Event, partition: int) -> None:
        self.parcels.evolve_ahead(event, partition)

    def _written(self, job: Callable[[], list[Event]]) -> list[Event]:
        """Carry out a job and write its outcome events ahead; they return once acknowledged.
        Raises WriteAheadFailed (the effect happened; whether its record did, only the log
        says)."""
        self._replied.at = None
        events = job()
        self._ahead.write(self.records(events))
        replied = self._replied.at
        if replied is not None:  # the window in which a crash repeats the delivery
            REPLY_TO_RECORD.observe(time.monotonic() - replied)
        return events

    def _carry_out(self, parcel: Parcel, data: bytes | RawUnavailable | None = None,
                   fx: Effects | None = None) -> list[Event]:
        """Carry out the parcel's decision on `data`, read ahead, or read now when it was not."""
        if parcel.notice is not None:  # a notice's retry
            return self._send_notice(parcel)
        decision = parcel.decision
        assert decision is not None  # noqa: S101 - only decided parcels are carried out
        fx, now = fx or self._effects, self._clock()
        with self._budget.holding(parcel.size):  # its bytes while held (decision 0009)
            try:
                if data is None:
                    data = self._read(parcel)
                if isinstance(data, RawUnavailable):
                    raise data
            except RawUnavailable as exc:
                return [outcomes.raw_unavailable(fx, parcel, str(exc), now)]
            events: list[Event] = []
            if decision.backup and not parcel.backup_done:
                events.append(self._backup(parcel, data))
            if decision.action == "delete":
                events.append(outcomes.discarded(fx, parcel, now))
            elif decision.action == "reject":
                events += self._reject(fx, parcel, data)
            else:
                events += self._deliver(fx, parcel, data, decision.tag)
            return events

    def _queue_job(self, request: QueueActionRequested,
                   acted_on: set[str]) -> Callable[[], list[Event]] | None:
        """An administrator's action on a deferred message, to carry out; None (logged) when
        the message does not wait in the delivery queue."""
        waiting = self.parcels.waiting(request.message_id)
        if request.message_id in acted_on:
            waiting = "another queue action for it is carried out in this batch"
        if isinstance(waiting, str):
            log.info("%s: queue action %s by %s changes nothing: %s", request.message_id,
                     request.action, request.actor, waiting)
            return None
        acted_on.add(request.message_id)
        log.info("%s: queue action %s by %s", request.message_id, request.action, request.actor)
        fx = self._effects.caused_by(request.event_id)
        if request.action == "retry":
            return partial(self._carry_out, waiting, None, fx)
        if request.action == "bounce":
            return lambda: self._with_bounce(fx, waiting, outcomes.returned_by_admin(
                fx, waiting, request.actor, self._clock()))
        return lambda: [outcomes.deleted_by_admin(fx, waiting, self._clock())]

    def _resend(self, request: BackupResendRequested) -> list[Event]:
        """One attempt to send a Backup copy, marked as released, to the request's recipients."""
        fx, loc = self._effects, request.location
        removed = self.parcels.copies_removed.get(request.message_id)
        problem = (f"the copy was removed from the Backup ({removed})" if removed is not None
                   else location_problem(request, self._names.backup))
        if problem is None:
            try:
                data = self._readers.mine().read(loc.topic, loc.partition, loc.offsets,
                                                 request.message_id, request.sha256)
            except RawUnavailable as exc:
                problem = str(exc)
        if problem is not None:
            log.warning("%s: resend by %s: the copy is unavailable: %s", request.message_id,
                        request.actor, problem)
            return [resent(fx, request, None, f"Backup copy unavailable: {problem}",
                           self._clock())]
        marked = mark_released(data, request.message_id, request.actor, request.occurred_at)
        # A Backup copy is the original: a forged verdict header in it goes, none is added.
        name = self._control.value.current.settings.verdict_header_name
        if name is not None:
            marked = self._logged(request.message_id, strip_fields(marked, name)).data
        outcome = self._send(request.envelope_from, list(request.recipients), marked)
        log.info("%s: resent from Backup by %s: %s", request.message_id, request.actor,
                 outcome.reply)
        return [resent(fx, request, outcome, outcome.reply, self._clock())]

    def _send_notice(self, parcel: Parcel) -> list[Event]:
        """A notice, sent with the null sender: it never gets a DSN (RFC 5321 section 4.5.5),
        and its delivery is recorded under its own id, deferred and retried like mail."""
        notice = parcel.notice
        assert notice is not None  # noqa: S101 - only notices are sent here
        outcome = self._send("", list(notice.to), notice.data.encode("ascii"))
        return outcomes.after_delivery(self._effects.caused_by(notice.event_id), parcel,
                                       outcome, False, self._clock()).events

    def _read(self, parcel: Parcel) -> bytes:
        raw = parcel.raw
        if raw is None:
            raise RawUnavailable(f"{parcel.message_id} is a notice: it has no raw message")
        return self._readers.mine().read(raw.topic, raw.partition, raw.offsets,
                                         parcel.raw_key, parcel.sha256)

    def _backup(self, parcel: Parcel, data: bytes) -> BackupStored:
        assert parcel.raw is not None  # noqa: S101 - a notice (no raw message) has no Backup
        chunked = backup_chunks(self._names.backup, parcel.message_id, data, parcel.partition)
        # Acknowledged with their offsets before BackupStored, which names them, is written.
        located = self._ahead.write(chunked.records)
        location = RawLocation(topic=self._names.backup, partition=located[0][0],
                               offsets=[offset for _p, offset in located],
                               chunk_bytes=parcel.raw.chunk_bytes)
        return outcomes.backup_stored(self._effects, parcel, location, chunked.sha256,
                                      self._clock())

    def watch(self, beat: Callable[[float], None]) -> None:
        self._beat = beat

    def _send(self, envelope_from: str, recipients: list[str], data: bytes) -> DeliveryOutcome:
        if (suspended := self._gate.closed()) is not None:
            return suspended
        # Alive while deliveries start: a next hop hanging in a command costs a timeout, and
        # a slow one may take another before this delivery ends.
        self._beat(2 * self._settings.smtp_timeout_s)
        outcome = deliver(
            host=self._settings.next_hop_host, port=self._settings.next_hop_port,
            envelope_from=envelope_from, recipients=recipients, data=data,
            helo=self._settings.helo_name, timeout_s=self._settings.smtp_timeout_s,
            tls=self._tls, cache=self.sessions,
        )
        self._gate.record(outcome)
        if outcome.kind == "delivered" and getattr(self._replied, "at", None) is None:
            self._replied.at = time.monotonic()
        return outcome

    def _deliver(self, fx: Effects, parcel: Parcel, data: bytes,
                 tag: str | None) -> list[Event]:
        tagged, data = False, disarm_marks(data)  # only a resend from Backup carries the mark
        if tag:
            result = tag_subject(data, tag)
            data, tagged = result.data, result.tagged
            if not result.tagged:
                log.warning("%s: subject not tagged: %s", parcel.message_id, result.note)
        assert parcel.decision is not None  # noqa: S101 - only decided parcels are delivered
        data = self._logged(parcel.message_id, for_delivery(
            data, self._control.value.at(parcel.settings_version).settings, parcel.decision,
            parcel.verdict, parcel.message_id)).data
        outcome = self._send(parcel.envelope_from, list(parcel.recipients), data)
        return self._with_bounce(fx, parcel, outcomes.after_delivery(
            fx, parcel, outcome, tagged, self._clock()))

    @staticmethod
    def _logged(message_id: str, edit: HeaderEdit) -> HeaderEdit:
        if edit.removed:
            log.warning("%s: removed %d outside verdict header field(s)", message_id, edit.removed)
        return edit

    def _with_bounce(self, fx: Effects, parcel: Parcel, recorded: Recorded) -> list[Event]:
        """The recorded events, and the DSN the sender is owed sent (best effort, once)."""
        bounce = recorded.bounce
        if bounce is None or not should_send_ndr(parcel.envelope_from, True)[0]:
            return recorded.events
        dsn_id = f"{parcel.message_id}-dsn"
        try:
            report = build_ndr(
                original=self._read(parcel),
                envelope_from=parcel.envelope_from, recipients=bounce.recipients,
                reporting_mta=self._settings.helo_name,
                reason="the next hop did not accept the message",
                status=outcomes.status_of(bounce.diagnostic), diagnostic=bounce.diagnostic,
                arrival=parcel.received_at, now=self._clock(), message_id=parcel.message_id,
                dsn_id=dsn_id, kind="delivery_failed",
            )
        except (RawUnavailable, ValueError) as exc:
            log.warning("no DSN for %s: %s", parcel.message_id, exc)
            return recorded.events
        sent = self._send("", [parcel.envelope_from], report)
        if sent.kind != "delivered":
            log.warning("the DSN for %s was not accepted: %s", parcel.message_id, sent.reply)
            return recorded.events
        return [*recorded.events, outcomes.ndr_sent(fx, parcel, "dsn", dsn_id,
                                                    "delivery_failed", self._clock())]

    def _reject(self, fx: Effects, parcel: Parcel, data: bytes) -> list[Event]:
        now = self._clock()
        # The NDR switch as it was when the message was received, as its rule (decisions.py).
        ndr_enabled = self._control.value.at(parcel.settings_version).settings.ndr_enabled
        send, why = should_send_ndr(parcel.envelope_from, ndr_enabled)
        if not send:
            return [outcomes.ndr_suppressed(fx, parcel, why, now)]
        dsn_id = f"{parcel.message_id}-ndr"
        held = parcel.decision is not None and parcel.decision.held
        try:
            report = build_ndr(
                original=data,
                envelope_from=parcel.envelope_from, recipients=list(parcel.recipients),
                reporting_mta=self._settings.helo_name,
                reason=reject_reason(held, parcel.decision.reason if parcel.decision else None),
                status="5.7.1", diagnostic=None, arrival=parcel.received_at, now=now,
                message_id=parcel.message_id, dsn_id=dsn_id,
                kind="kata_unscanned" if held else "kata_reject",
            )
        except ValueError as exc:
            # Cannot come from a valid SMTP session; still, the message must end somewhere.
            return outcomes.failed(fx, parcel, f"no NDR could be built: {exc}",
                                   [parcel.envelope_from], parcel.attempts + 1, now).events
        outcome = self._send("", [parcel.envelope_from], report)
        return self._with_bounce(fx, parcel, outcomes.after_ndr(fx, parcel, outcome, dsn_id,
                                                                self._clock()))
