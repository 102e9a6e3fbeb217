"""Apply: carries out each decided action — Backup copy, deliver (with the subject tag),
discard, NDR — and records the outcome. A stateful handler of the transactional loop over
`katagate.mail`; deferred deliveries are timers restored from the log.

Effects outside Kafka (SMTP) happen before the transaction that records them commits: a crash
in between repeats the effect once on restart (at-least-once delivery, as every MTA), never
loses it. Every recorded effect has one id per (message, effect).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, cast

from decider.admission import new_control_view
from decider.history import ControlHistory
from decider.ndr import build_ndr, should_send_ndr
from decider.parcels import Parcel, Parcels
from decider.settings import DeciderSettings
from decider.smtp_out import DeliveryOutcome, SessionCache, StartTls, deliver, next_retry
from decider.subject_tag import tag_subject
from eventlog.folded import FoldedTopic
from eventlog.loop import Poison, TransactionalLoop
from eventlog.principals import PRINCIPALS
from eventlog.producer import TransactionalProducer
from eventlog.raw import RawReader, RawUnavailable, RawWant, chunk, prefetch
from eventlog.records import Consumed, Outgoing
from eventlog.restore_points import RestorePoints
from eventlog.settings import KafkaSettings
from eventlog.topics import TopicNames
from schemas import (
    ActionDecided,
    BackupStored,
    DeliveryDeferred,
    DeliveryFailed,
    Event,
    MessageDelivered,
    MessageDiscarded,
    MessageReceived,
    NdrSent,
    NdrSuppressed,
    ProducerRef,
    RawLocation,
    SchemaError,
    decode_event,
)
from schemas.ids import EFFECTS, step_id

log = logging.getLogger(__name__)
DECIDER = PRINCIPALS["decider"]
KATA_REJECT_REASON = "KATA detected a threat in this message"
OWN_OUTPUTS = (BackupStored, DeliveryDeferred, DeliveryFailed, MessageDelivered,
               MessageDiscarded, NdrSent, NdrSuppressed)
MAX_HEADER_BLOCK = 1024 * 1024


def header_block(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n", 0, MAX_HEADER_BLOCK)
    return data[: end + 2] if end >= 0 else data[:MAX_HEADER_BLOCK]


class Apply:
    def __init__(
        self,
        kafka: KafkaSettings,
        settings: DeciderSettings,
        control: FoldedTopic[ControlHistory],
        producer: ProducerRef,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._names = TopicNames(kafka.topic_prefix)
        self._control = control
        self._producer = producer
        self._clock = clock
        self._kafka = kafka
        # Each carrying-out thread reads raw chunks with its own consumer (a consumer is not
        # shared between threads); Backup chunks go into the one transaction under a lock.
        self._readers = threading.local()
        self._all_readers: list[RawReader] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=settings.delivery_concurrency,
                                        thread_name_prefix="apply")
        self.parcels = Parcels()
        self._points = RestorePoints()
        # Deliveries reuse connections to the next hop (RSET between messages).
        self.sessions = SessionCache()
        # The loop's producer: Backup chunks join the transaction that records BackupStored.
        self.transaction: TransactionalProducer | None = None

    @property
    def next_hop(self) -> str:
        return f"{self._settings.next_hop_host}:{self._settings.next_hop_port}"

    # -- the loop's handler ---------------------------------------------------------------

    def handle(self, record: Consumed) -> list[Outgoing]:
        try:
            event = decode_event(record.value or b"")
        except SchemaError as exc:
            raise Poison(str(exc)) from exc
        self._fold(event, record)
        if isinstance(event, ActionDecided):
            parcel = self.parcels.live.get(event.message_id)
            if parcel is not None and parcel.decision is not None and parcel.attempts == 0:
                return self._out(self._carry_out(parcel), record.partition)
        return []

    def handle_batch(self, records: Sequence[Consumed]) -> list[Sequence[Outgoing] | Exception]:
        """The batch's records folded in order, then its decided messages carried out
        concurrently; one result per record."""
        results: list[Sequence[Outgoing] | Exception] = []
        work: list[tuple[int, Parcel, int]] = []
        for index, record in enumerate(records):
            try:
                event = decode_event(record.value or b"")
            except SchemaError as exc:
                results.append(Poison(str(exc)))
                continue
            self._fold(event, record)
            results.append([])
            if isinstance(event, ActionDecided):
                parcel = self.parcels.live.get(event.message_id)
                if parcel is not None and parcel.decision is not None and parcel.attempts == 0:
                    work.append((index, parcel, record.partition))
        # Messages decided together were received together: one pass reads their bytes.
        ahead = prefetch(self._reader(), [
            (RawWant(p.raw.topic, p.raw.partition, p.raw.offsets, p.message_id, p.sha256), p.size)
            for _i, p, _part in work])
        parcels = [parcel for _i, parcel, _p in work]
        done = self._pool.map(self._carried_out_or_error, parcels,
                              [ahead.get(parcel.message_id) for parcel in parcels])
        for (index, _parcel, partition), outcome in zip(work, done, strict=True):
            results[index] = outcome if isinstance(outcome, Exception) else self._out(
                outcome, partition)
        return results

    def _carried_out_or_error(self, parcel: Parcel,
                              data: bytes | RawUnavailable | None) -> list[Event] | Exception:
        try:
            return self._carry_out(parcel, data)
        except Exception as exc:  # the loop sets this record aside, the others go on
            return exc

    def _fold(self, event: Event, record: Consumed) -> None:
        self.parcels.evolve(event, record.partition)
        if isinstance(event, MessageReceived):
            self._points.began(record.partition, event.message_id, record.offset)

    def restore(self, record: Consumed) -> None:
        try:
            event = decode_event(record.value or b"")
        except SchemaError:
            return
        self._fold(event, record)

    def restore_point(self, _topic: str, partition: int) -> int | None:
        """Where the oldest message apply still carries (received, not yet at its terminal
        event) was received; events of a message no longer carried change nothing."""
        live = self.parcels.live
        return self._points.point(partition, lambda m: m in live)

    def restore_ahead(self, record: Consumed) -> None:
        """After the committed offset, only apply's own records of what it did: done already,
        so a retry timer must not do it again."""
        try:
            event = decode_event(record.value or b"")
        except SchemaError:
            return
        if isinstance(event, OWN_OUTPUTS):
            self.parcels.evolve(event, record.partition)

    def forget(self, partitions: Sequence[tuple[str, int]]) -> None:
        self.parcels.forget({p for _topic, p in partitions})
        self._points.forget(p for _topic, p in partitions)

    def tick(self) -> list[Outgoing]:
        self.sessions.sweep()
        out: list[Outgoing] = []
        for parcel in self.parcels.due(self._clock()):
            out += self._out(self._carry_out(parcel), parcel.partition)
        return out

    def _out(self, events: list[Event], partition: int) -> list[Outgoing]:
        for event in events:
            self.parcels.evolve(event, partition)
        return [Outgoing.event(self._names.mail, e) for e in events]

    # -- effects ------------------------------------------------------------------------

    def _common(self, parcel: Parcel, effect: str) -> dict[str, Any]:
        decision = parcel.decision
        return {
            "event_id": step_id(EFFECTS, parcel.message_id, effect), "occurred_at": self._clock(),
            "producer": self._producer, "message_id": parcel.message_id,
            "correlation_id": parcel.correlation_id,
            "causation_id": decision.event_id if decision is not None else None,
        }

    def _carry_out(self, parcel: Parcel,
                   data: bytes | RawUnavailable | None = None) -> list[Event]:
        """Carry out the parcel's decision on `data`, read ahead, or read now when it was not."""
        decision = parcel.decision
        assert decision is not None  # noqa: S101 - only decided parcels are carried out
        try:
            if data is None:
                data = self._reader().read(parcel.raw.topic, parcel.raw.partition,
                                           parcel.raw.offsets, parcel.message_id, parcel.sha256)
            if isinstance(data, RawUnavailable):
                raise data
        except RawUnavailable as exc:
            return [DeliveryFailed(
                **self._common(parcel, "failed"), next_hop=self.next_hop,
                attempts=max(1, parcel.attempts), reply=f"raw message unavailable: {exc}"[:1000],
                recipients=list(parcel.recipients),
            )]
        events: list[Event] = []
        if decision.backup and not parcel.backup_done:
            events.append(self._backup(parcel, data))
        if decision.action == "delete":
            events.append(MessageDiscarded(
                **self._common(parcel, "discarded"),
                reason="deleted_by_admin" if decision.reason == "deleted_by_admin"
                else "kata_delete"))
        elif decision.action == "reject":
            events += self._reject(parcel, data)
        else:
            events += self._deliver(parcel, data, decision.tag)
        return events

    def _reader(self) -> RawReader:
        reader: RawReader | None = getattr(self._readers, "reader", None)
        if reader is None:
            reader = self._readers.reader = RawReader(self._kafka)
            with self._lock:
                self._all_readers.append(reader)
        return reader

    def _backup(self, parcel: Parcel, data: bytes) -> BackupStored:
        if self.transaction is None:
            raise RuntimeError("apply has no transaction to write the Backup copy in")
        chunked = chunk(self._names.backup, parcel.message_id, data)
        with self._lock:  # the producer waits for its own records' offsets: one at a time
            located = self.transaction.produce_located(chunked.records)
        location = RawLocation(topic=self._names.backup, partition=located[0][0],
                               offsets=[offset for _p, offset in located],
                               chunk_bytes=parcel.raw.chunk_bytes)
        return BackupStored(**self._common(parcel, "backup"),
                            location=location, sha256=chunked.sha256)

    def _send(self, envelope_from: str, recipients: list[str],
              data: bytes) -> tuple[str, str, list[str]]:
        return delivery_kind(self._deliver_once(envelope_from, recipients, data))

    def _deliver_once(self, envelope_from: str, recipients: list[str],
                      data: bytes) -> DeliveryOutcome:
        return deliver(
            host=self._settings.next_hop_host, port=self._settings.next_hop_port,
            envelope_from=envelope_from, recipients=recipients, data=data,
            helo=self._settings.helo_name, timeout_s=self._settings.smtp_timeout_s,
            starttls=cast(StartTls, self._settings.next_hop_starttls), cache=self.sessions,
        )

    def _retry_or_fail(self, parcel: Parcel, reply: str, recipients: list[str]) -> list[Event]:
        now = self._clock()
        attempt = parcel.attempts + 1
        retry_at = next_retry(
            attempt, parcel.first_attempt_at or now, now,
            timedelta(seconds=self._settings.retry_period_s),
            first=timedelta(seconds=self._settings.retry_first_s),
        )
        if retry_at is not None:
            return [DeliveryDeferred(**self._common(parcel, f"deferred-{attempt}"),
                                     next_hop=self.next_hop, attempt=attempt,
                                     reply=reply[:1000], retry_at=retry_at)]
        return self._failed(parcel, reply, recipients, attempt)

    def _failed(self, parcel: Parcel, reply: str, recipients: list[str],
                attempt: int) -> list[Event]:
        events: list[Event] = [DeliveryFailed(
            **self._common(parcel, "failed"), next_hop=self.next_hop,
            attempts=attempt, reply=reply[:1000], recipients=recipients or list(parcel.recipients),
        )]
        decision = parcel.decision
        if decision is not None and decision.action == "deliver":
            events += self._dsn(parcel, reply, recipients or list(parcel.recipients))
        return events

    def _dsn(self, parcel: Parcel, reply: str, recipients: list[str]) -> list[Event]:
        """Tell the sender a delivery failed for good (best effort, once)."""
        send, _why = should_send_ndr(parcel.envelope_from, True)
        if not send:
            return []
        dsn_id = f"{parcel.message_id}-dsn"
        try:
            data = self._reader().read(parcel.raw.topic, parcel.raw.partition,
                                       parcel.raw.offsets, parcel.message_id, parcel.sha256)
            report = build_ndr(
                original_headers=header_block(data), envelope_from=parcel.envelope_from,
                recipients=recipients, reporting_mta=self._settings.helo_name,
                reason="the next hop did not accept the message", status=_status(reply),
                diagnostic=reply, arrival=parcel.received_at, now=self._clock(),
                message_id=parcel.message_id, dsn_id=dsn_id, kind="delivery_failed",
            )
        except (RawUnavailable, ValueError) as exc:
            log.warning("no DSN for %s: %s", parcel.message_id, exc)
            return []
        kind, _reply, _ok = self._send("", [parcel.envelope_from], report)
        if kind != "delivered":
            log.warning("the DSN for %s was not accepted: %s", parcel.message_id, _reply)
            return []
        return [NdrSent(**self._common(parcel, "dsn"), to=parcel.envelope_from,
                        dsn_message_id=dsn_id, reason="delivery_failed")]

    def _deliver(self, parcel: Parcel, data: bytes, tag: str | None) -> list[Event]:
        tagged = False
        if tag:
            result = tag_subject(data, tag)
            data, tagged = result.data, result.tagged
            if not result.tagged:
                log.warning("%s: subject not tagged: %s", parcel.message_id, result.note)
        outcome = self._deliver_once(parcel.envelope_from, list(parcel.recipients), data)
        kind, reply, accepted = delivery_kind(outcome)
        if kind == "delivered":
            events: list[Event] = [MessageDelivered(
                **self._common(parcel, "delivered"), next_hop=self.next_hop,
                recipients=accepted or list(parcel.recipients), reply=reply[:1000],
                tagged=tagged, attempts=parcel.attempts + 1,
            )]
            # Recipients the next hop refused while taking the message for others: their
            # sender hears of it now. (Temporarily refused ones are not retried on their own:
            # that would need per-recipient delivery state; noted as a limit.)
            refused = [r for r in parcel.recipients if r not in accepted]
            if refused:
                events += self._dsn(parcel, f"refused by the next hop: {reply}", refused)
            return events
        if kind == "deferred":
            return self._retry_or_fail(parcel, reply, list(parcel.recipients))
        return self._failed(parcel, reply, list(parcel.recipients), parcel.attempts + 1)

    def _reject(self, parcel: Parcel, data: bytes) -> list[Event]:
        ndr_enabled = self._control.value.current.settings.ndr_enabled
        send, why = should_send_ndr(parcel.envelope_from, ndr_enabled)
        if not send:
            return [NdrSuppressed(**self._common(parcel, "ndr"),
                                  reason=why)]
        dsn_id = f"{parcel.message_id}-ndr"
        try:
            report = build_ndr(
                original_headers=header_block(data), envelope_from=parcel.envelope_from,
                recipients=list(parcel.recipients), reporting_mta=self._settings.helo_name,
                reason=KATA_REJECT_REASON, status="5.7.1", diagnostic=None,
                arrival=parcel.received_at, now=self._clock(), message_id=parcel.message_id,
                dsn_id=dsn_id, kind="kata_reject",
            )
        except ValueError as exc:
            # Cannot come from a valid SMTP session; still, the message must end somewhere.
            return self._failed(parcel, f"no NDR could be built: {exc}", [parcel.envelope_from],
                                parcel.attempts + 1)
        kind, reply, _accepted = self._send("", [parcel.envelope_from], report)
        if kind == "delivered":
            return [NdrSent(**self._common(parcel, "ndr"), to=parcel.envelope_from,
                            dsn_message_id=dsn_id, reason="kata_reject")]
        if kind == "deferred":
            return self._retry_or_fail(parcel, reply, [parcel.envelope_from])
        return self._failed(parcel, reply, [parcel.envelope_from], parcel.attempts + 1)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.sessions.close()
        for reader in self._all_readers:
            reader.close()


def _status(reply: str) -> str:
    """The enhanced status code in a reply (5.1.1 …), else a generic permanent failure."""
    for word in reply.split():
        parts = word.split(".")
        if len(parts) == 3 and parts[0] in ("4", "5") and all(p.isdigit() for p in parts):
            return "5" + word[1:]
    return "5.0.0"


def delivery_kind(outcome: DeliveryOutcome) -> tuple[str, str, list[str]]:
    """(delivered | deferred | failed, the reply line, the recipients the next hop accepted)."""
    return outcome.kind, outcome.reply, outcome.delivered_to


def run_apply(kafka: KafkaSettings, settings: DeciderSettings, stop: threading.Event,
              clock: Callable[[], datetime]) -> None:
    names = TopicNames(kafka.topic_prefix)
    control = new_control_view(kafka)
    control.wait_caught_up(30)
    handler = Apply(kafka, settings, control,
                    ProducerRef(stage="decider", instance=settings.instance_id), clock)
    loop = TransactionalLoop(
        kafka, stage="apply", group_id=DECIDER.group(kafka.topic_prefix, "apply"),
        transactional_id=DECIDER.transactional_id(kafka.topic_prefix,
                                                  f"apply-{settings.instance_id}"),
        instance_id=f"apply-{settings.instance_id}",
        topics=[names.mail], handler=handler, dead_letter_topic=names.deadletter,
        batch_size=50,
    )
    handler.transaction = loop.producer
    try:
        while not stop.is_set():
            loop.run_once()
    finally:
        loop.close()
        handler.close()
        control.close()
