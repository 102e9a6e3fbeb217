"""The transactional consume → decide → produce loop every stage runs.

Each batch is one Kafka transaction holding the batch's outputs *and* the consumed offsets, so a
crash anywhere leaves either all of it or none of it; on restart the uncommitted inputs are read
again and, being decided by pure functions with ids derived from their positions, give the same
outputs. Records a handler cannot process go to the dead-letter topic with the reason, in the same
transaction, and the loop keeps going.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from eventlog import restore_points
from eventlog.clients import new_consumer, new_reader
from eventlog.errors import ConsumerFailed, KatagateError
from eventlog.lag import LagMeter
from eventlog.metrics import LOOP_BATCHES, LOOP_DEAD_LETTERED, LOOP_RECORDS
from eventlog.producer import TransactionalProducer, TransactionFailed
from eventlog.records import Consumed, Outgoing
from eventlog.settings import KafkaSettings
from eventlog.stuck_offsets import CommittedOffsets

log = logging.getLogger(__name__)

# Dead-letter headers: where the record came from and why it was set aside.
DLQ_TOPIC = "dlq-topic"
DLQ_PARTITION = "dlq-partition"
DLQ_OFFSET = "dlq-offset"
DLQ_STAGE = "dlq-stage"
DLQ_REASON = "dlq-reason"


class Poison(KatagateError):
    """A record that can never be processed (undecodable, invalid): dead-letter it."""


class Handler(Protocol):
    def handle(self, record: Consumed) -> Sequence[Outgoing]:
        """Decide on one record: the records to produce, or raise Poison."""
        ...


class Restoring(Protocol):
    """Optional: a handler whose state is the fold of its input partitions. At assignment it is
    given every record before the committed offset, and it forgets revoked partitions. It may
    also define `restore_ahead(record)`, given every record after the committed offset up to
    the end, to fold the outputs it wrote there (see `TransactionalLoop._restore`); and
    `restore_point(topic, partition)`, the offset of the oldest record its state still needs
    (None: none before the committed offset), committed with the offset so that the next
    restore begins there (see `eventlog.restore_points`)."""

    def restore(self, record: Consumed) -> None: ...

    def forget(self, partitions: Sequence[tuple[str, int]]) -> None: ...


class Batching(Protocol):
    """A handler that decides a whole batch at once (its effects may then run concurrently):
    one result per record, in order — its outputs, or the exception that refused it (that
    record alone goes to the dead-letter topic)."""

    def handle_batch(self, records: Sequence[Consumed]) -> list[Sequence[Outgoing] | Exception]:
        ...


class Ticking(Protocol):
    """Optional: a handler with timers. Outputs it returns are produced in the loop's next
    transaction, with or without consumed records."""

    def tick(self) -> Sequence[Outgoing]: ...


class TransactionListener(Protocol):
    """Optional: a stateful handler learns whether its batch's effects became durable."""

    def committed(self) -> None: ...

    def aborted(self) -> None: ...


def consumer_config(
    settings: KafkaSettings, group_id: str, instance_id: str | None = None
) -> dict[str, Any]:
    static = {"group.instance.id": instance_id} if instance_id else {}
    return {
        # Static membership: a restarted instance takes its partitions back at once instead of
        # waiting for the group to expire its previous self.
        **static,
        "group.id": group_id,
        "client.id": group_id,  # names the stage in the broker's request logs and metrics
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        "fetch.max.bytes": 16 * 1024 * 1024,
    }


class TransactionalLoop:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        stage: str,
        group_id: str,
        transactional_id: str,
        topics: Sequence[str],
        handler: Handler,
        dead_letter_topic: str,
        instance_id: str | None = None,
        batch_size: int = 500,
        poll_timeout_s: float = 0.2,
        before_commit: Callable[[], None] | None = None,
        manual_assignment: bool = False,
    ) -> None:
        self.stage = stage
        self._handler = handler
        self._dead_letter_topic = dead_letter_topic
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._linger_s = settings.loop_linger_ms / 1000
        self._busy_until = 0.0
        # A seam for tests (and tracing): runs after the batch is produced, before the commit.
        self._before_commit = before_commit
        self._timeout = settings.request_timeout_s
        self._settings = settings
        self._producer = TransactionalProducer(settings, transactional_id)
        self._lag = LagMeter(stage)
        self._consumer = new_consumer(settings, consumer_config(settings, group_id, instance_id))
        self._offsets = CommittedOffsets(settings, stage=stage, group_id=group_id,
                                         producer=self._producer, consumer=self._consumer)
        self._restoring = _restoring(handler)
        self._ticking = _ticking(handler)
        self._assign_failed: Exception | None = None
        # Partitions revoked while the current batch was gathered (see _with_restore_points).
        self._revoked_in_batch: set[tuple[str, int]] = set()
        if manual_assignment:
            # A single writer reads every partition itself instead of sharing them in a group.
            self._assign_all(list(topics))
        else:
            self._consumer.subscribe(
                list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self.close()

    def run_once(self) -> int:
        """Process at most one batch in one transaction; return how many records it held."""
        self._revoked_in_batch.clear()
        messages = self._next_messages()
        records: list[Consumed] = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(Consumed.from_message(message))
            elif error.fatal() or error.code() == KafkaError._FATAL:
                # A fatal consumer error comes as a _FATAL event whose fatal() may be false;
                # going on would poll a consumer that never reads again.
                raise ConsumerFailed(f"{self.stage}: {error}")
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("%s: consumer error: %s", self.stage, error)
        timed: Sequence[Outgoing] = ()
        if not records:
            timed = self._ticking.tick() if self._ticking is not None else ()
            if not timed:
                self._lag.measure(self._consumer)
                return 0
        # begin is local to the client; the broker's transaction (and the stall it causes for
        # read_committed readers of these partitions) starts with the first record produced.
        # So decide the whole batch first — handlers with side effects may take a while — and
        # produce it at the end, keeping the open-transaction window short.
        self._producer.begin()
        try:
            outputs: list[Outgoing] = []
            batched = _batching(self._handler)
            if batched is not None and records:
                for record, result in zip(records, batched.handle_batch(records), strict=True):
                    outputs.extend(self._refused(record, result)
                                   if isinstance(result, Exception) else result)
            else:
                for record in records:
                    outputs.extend(self._decide(record))
            if records and self._ticking is not None:
                timed = self._ticking.tick()
            outputs.extend(timed)
            self._producer.produce(outputs)
            if self._before_commit is not None:
                self._before_commit()
            if records:
                self._producer.send_offsets(
                    self._with_restore_points(self._next_offsets(records)),
                    self._group_metadata()
                )
            self._producer.commit()
        except (KafkaException, TransactionFailed) as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if not isinstance(exc, TransactionFailed):
                self._producer.fail(error)
            self._rewind(records)
            if (listener := self._listener()) is not None:
                listener.aborted()
            if self._restoring is not None:
                # State changed eagerly for the aborted batch: rebuild it from the log.
                assigned = list(self._consumer.assignment())
                self._restoring.forget([(tp.topic, tp.partition) for tp in assigned])
                self._restore(assigned)
            LOOP_BATCHES.labels(self.stage, "aborted").inc()
            log.warning("%s: batch of %d aborted (%s); it will be read again",
                        self.stage, len(records), exc)
            return 0
        if (listener := self._listener()) is not None:
            listener.committed()
        LOOP_BATCHES.labels(self.stage, "committed").inc()
        LOOP_RECORDS.labels(self.stage).inc(len(records))
        if records:
            self._lag.processed(records[-1].timestamp_ms)
        self._lag.measure(self._consumer)
        return len(records)

    # -- state restore ----------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._restoring is not None:
            # An exception escaping a rebalance callback comes out of poll() as a bare
            # KafkaError, which no `except` catches: keep it and raise it properly after.
            try:
                self._restore(partitions)
            except Exception as exc:
                self._assign_failed = exc

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._revoked_in_batch.update((tp.topic, tp.partition) for tp in partitions)
        if self._restoring is not None:
            self._restoring.forget([(tp.topic, tp.partition) for tp in partitions])

    def _assign_all(self, topics: list[str]) -> None:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in self._consumer.list_topics(topic, timeout=self._timeout).topics[topic]
            .partitions
        ]
        committed = self._offsets.read(partitions)
        if self._restoring is not None:
            self._restore(committed)
        start = [
            TopicPartition(tp.topic, tp.partition, max(tp.offset, OFFSET_BEGINNING))
            if tp.offset >= 0 else TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)
            for tp in committed
        ]
        self._consumer.assign(start)

    def _restore(self, partitions: list[TopicPartition]) -> None:
        """Give the handler every committed record before the group's committed offset; and,
        to a handler that folds its own outputs (`restore_ahead`), every record after it to
        the end: outputs are committed with the offsets of the inputs that caused them, so
        those that lie beyond the committed offset were already caused, and a state without
        them would decide again (a timer firing before they are read back)."""
        assert self._restoring is not None  # noqa: S101 - only called when restoring
        committed = self._offsets.read(
            [TopicPartition(tp.topic, tp.partition) for tp in partitions])
        ends = {(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset > 0}
        if not ends:
            return
        # Where each partition's state begins, if its commit says (older commits do not).
        points = {(tp.topic, tp.partition): restore_points.decode(tp.metadata, tp.offset)
                  for tp in committed if tp.offset > 0}
        starts = {key: OFFSET_BEGINNING if point is None else point
                  for key, point in points.items()}
        # A point whose records retention has removed: the earliest there is.
        reader = new_reader(self._settings, f"restore-{self.stage}",
                            **{"enable.partition.eof": True, "auto.offset.reset": "earliest"})
        ahead = getattr(self._restoring, "restore_ahead", None)
        began = time.monotonic()
        try:
            reader.assign([TopicPartition(t, p, starts[t, p]) for (t, p) in ends])
            pending = set(ends)
            restored = 0
            while pending:
                message = reader.poll(1.0)
                if message is None:
                    continue
                key = (message.topic() or "", message.partition() or 0)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(key)
                    continue
                offset = message.offset() or 0
                if key not in pending:
                    continue
                if offset >= ends[key]:
                    if ahead is None:
                        pending.discard(key)
                    else:
                        ahead(Consumed.from_message(message))  # read on to the end (EOF)
                    continue
                self._restoring.restore(Consumed.from_message(message))
                restored += 1
                if offset + 1 >= ends[key] and ahead is None:
                    pending.discard(key)
            # The partitions wait for it: ops read it after a rebalance.
            log.info("%s: restored state from %d records of %d partitions in %.1f s (%d from "
                     "their start)", self.stage, restored, len(ends), time.monotonic() - began,
                     sum(1 for point in points.values() if point is None))
        finally:
            reader.close()

    def _next_messages(self) -> list[Any]:
        """What is already fetched, up to a batch; if nothing, wait for one record.

        A plain consume(batch, timeout) waits out the whole timeout unless a full batch
        arrives: under light traffic every record would wait that long at every stage.
        """
        messages: list[Any] = self._consumer.consume(self._batch_size, 0)
        if not messages:
            first = self._consumer.poll(self._poll_timeout_s)
            self._raise_assign_failure()
            if first is None:
                return []
            messages = [first, *self._consumer.consume(self._batch_size - 1, 0)]
        now = time.monotonic()
        if self._linger_s and len(messages) < self._batch_size and now < self._busy_until:
            # Traffic is steady: fill the transaction a little more (consume returns at once
            # if the batch fills).
            messages += self._consumer.consume(self._batch_size - len(messages), self._linger_s)
        self._busy_until = now + 1.0
        # Every consume above may have run the rebalance callback: never decide a batch on a
        # state whose restore failed.
        self._raise_assign_failure()
        return self._without_stale(messages)

    def _without_stale(self, messages: list[Any]) -> list[Any]:
        """Drop the records of partitions revoked while the batch was gathered. They were
        fetched for the old assignment and the state has forgotten their partition: decided
        here, a decision was lost (an `ActionDecided` met no parcel) and its offset committed
        past it for the next owner. A partition assigned again within the gather is read again
        from its committed offset (its later records were dropped with the stale ones)."""
        if not self._revoked_in_batch:
            return messages
        kept = [m for m in messages
                if (m.topic(), m.partition()) not in self._revoked_in_batch]
        if len(kept) == len(messages):
            return messages
        current = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        assigned = [TopicPartition(t, p) for t, p in self._revoked_in_batch if (t, p) in current]
        try:
            for tp in self._offsets.read(assigned) if assigned else []:
                self._consumer.seek(TopicPartition(
                    tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        except KafkaException as exc:
            # Without the seek those records would be skipped: start the part over instead.
            raise ConsumerFailed(f"{self.stage}: could not read a partition again after a "
                                 f"rebalance: {exc}") from exc
        log.info("%s: %d records of partitions revoked during the batch set aside", self.stage,
                 len(messages) - len(kept))
        return kept

    def _raise_assign_failure(self) -> None:
        failed, self._assign_failed = self._assign_failed, None
        if failed is not None:
            # The handler's state is partly restored: only a new loop (and handler) is safe.
            raise ConsumerFailed(f"{self.stage}: restoring assigned partitions failed: "
                                 f"{failed}") from failed

    @property
    def producer(self) -> TransactionalProducer:
        return self._producer

    def close(self) -> None:
        try:
            self._producer.close()
        finally:
            # Without close() the group waits a whole session timeout before reassigning.
            self._consumer.close()

    def _decide(self, record: Consumed) -> Sequence[Outgoing]:
        try:
            return self._handler.handle(record)
        except Exception as exc:
            return self._refused(record, exc)

    def _refused(self, record: Consumed, exc: Exception) -> list[Outgoing]:
        # A pure decision that fails fails the same way every time: set the record aside.
        reason = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, Poison):
            log.error("%s: handler failed on %s[%d]@%d\n%s", self.stage, record.topic,
                      record.partition, record.offset,
                      "".join(traceback.format_exception(exc)))
        LOOP_DEAD_LETTERED.labels(self.stage, type(exc).__name__).inc()
        return [self._dead_letter(record, reason)]

    def _dead_letter(self, record: Consumed, reason: str) -> Outgoing:
        return Outgoing(
            topic=self._dead_letter_topic,
            key=record.key,
            value=record.value or b"",
            headers=(
                *record.headers,
                (DLQ_TOPIC, record.topic.encode()),
                (DLQ_PARTITION, str(record.partition).encode()),
                (DLQ_OFFSET, str(record.offset).encode()),
                (DLQ_STAGE, self.stage.encode()),
                (DLQ_REASON, reason[:4000].encode("utf-8", "replace")),
            ),
        )

    @staticmethod
    def _next_offsets(records: Sequence[Consumed]) -> list[TopicPartition]:
        last: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            last[key] = max(last.get(key, -1), record.offset)
        return [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]

    def _with_restore_points(self, offsets: list[TopicPartition]) -> list[TopicPartition]:
        point_of = getattr(self._restoring, "restore_point", None)
        if point_of is None:
            return offsets
        marked = []
        for tp in offsets:
            if (tp.topic, tp.partition) in self._revoked_in_batch:
                # A second guard behind _without_stale: the state forgot this partition during
                # the batch, so a point from it would skip what the next owner needs (seen:
                # three decided messages never carried out after a rebalance). No point: the
                # next restore reads the partition from its start.
                marked.append(tp)
                continue
            point = point_of(tp.topic, tp.partition)
            start = tp.offset if point is None else min(point, tp.offset)
            marked.append(TopicPartition(tp.topic, tp.partition, tp.offset,
                                         restore_points.encode(start)))
        return marked

    def _rewind(self, records: Sequence[Consumed]) -> None:
        """Seek back to the first record of the aborted batch on every partition it touched."""
        first: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            first[key] = min(first.get(key, record.offset), record.offset)
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        for (topic, partition), offset in first.items():
            if (topic, partition) in assigned:
                self._consumer.seek(TopicPartition(topic, partition, offset))

    def _group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def _listener(self) -> TransactionListener | None:
        handler: Any = self._handler
        return handler if hasattr(handler, "committed") and hasattr(handler, "aborted") else None


def _restoring(handler: Any) -> Restoring | None:
    return handler if hasattr(handler, "restore") and hasattr(handler, "forget") else None


def _batching(handler: Any) -> Batching | None:
    return handler if callable(getattr(handler, "handle_batch", None)) else None


def _ticking(handler: Any) -> Ticking | None:
    return handler if hasattr(handler, "tick") else None
