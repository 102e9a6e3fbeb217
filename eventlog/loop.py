"""The transactional consume → decide → produce loop every stage runs.

Each batch is one Kafka transaction holding the batch's outputs *and* the consumed offsets, so a
crash anywhere leaves either all of it or none of it; on restart the uncommitted inputs are read
again and, being decided by pure functions with ids derived from their positions, give the same
outputs. What a handler may implement is `eventlog.handler.Handler`; restoring its state is
`eventlog.recovery`; records it refuses go to the dead-letter topic (`eventlog.dead_letters`)
in the same transaction, and the loop keeps going.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from katagate.eventlog.clients import new_consumer
from katagate.eventlog.dead_letters import set_aside
from katagate.eventlog.drain import before_cut, cut
from katagate.eventlog.errors import ConsumerFailed
from katagate.eventlog.fetching import FETCH_WHEN_DRAINED, gathered
from katagate.eventlog.handler import Handler
from katagate.eventlog.health import Health
from katagate.eventlog.lag import LagMeter
from katagate.eventlog.metrics import LOOP_BATCHES, LOOP_RECORDS
from katagate.eventlog.producer import WEDGED_GRACE_S, TransactionalProducer, TransactionFailed
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.recovery import Recovery
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.stuck_offsets import CommittedOffsets
from katagate.eventlog.write_ahead import WriteAheadFailed

log = logging.getLogger(__name__)


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
        **FETCH_WHEN_DRAINED,
    }


class TransactionalLoop:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        stage: str,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        dead_letter_topic: str,
        instance_id: str | None = None,
        batch_size: int = 500,
        poll_timeout_s: float = 0.2,
        before_commit: Callable[[], None] | None = None,
        manual_assignment: bool = False,
        transactional_id: str | None = None,
        producer: TransactionalProducer | None = None,
        health: Health | None = None,
    ) -> None:
        """The producer is the loop's own (`transactional_id`) or one the handler also writes
        with (`producer`): exactly one of the two. `health`: the process's, where the loop
        beats at each poll and says whether it is restored (part named `stage`)."""
        if (producer is None) == (transactional_id is None):
            raise ValueError("a loop needs exactly one of transactional_id and producer")
        self.stage = stage
        self._handler = handler
        self._dead_letter_topic = dead_letter_topic
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._linger_s = settings.loop_linger_ms / 1000
        self._commit_bound_s = settings.request_timeout_s + WEDGED_GRACE_S
        # A seam for tests (and tracing): runs after the batch is produced, before the commit.
        self._before_commit = before_commit
        self._producer = producer or TransactionalProducer(settings, str(transactional_id))
        self._stale = False  # see run_once: the state folded past a committed cut
        self._lag = LagMeter(stage)
        # Before the first poll: the consumer's start and, with manual assignment, the restore.
        self._part = (health or Health()).part(stage, blocking_s=2 * settings.request_timeout_s)
        handler.watch(lambda blocking_s: self._part.beat(blocking_s=blocking_s))
        self._consumer = new_consumer(settings, consumer_config(settings, group_id, instance_id))
        offsets = CommittedOffsets(settings, stage=stage, group_id=group_id,
                                   producer=self._producer, consumer=self._consumer)
        self._recovery = Recovery(settings, stage, handler, self._consumer, offsets, self._part)
        if manual_assignment:
            self._recovery.assign_all(list(topics))
        else:
            self._consumer.subscribe(
                list(topics), on_assign=self._recovery.on_assign,
                on_revoke=self._recovery.on_revoke, on_lost=self._recovery.on_revoke,
            )

    def run_once(self) -> int:
        """Process at most one batch in one transaction; return how many records it held."""
        if self._stale:  # a batch was committed only up to a cut: the state ran ahead of it
            self._recovery.rebuild()
            self._stale = False
        self._recovery.revoked_in_batch.clear()
        records = self._records(self._next_messages())
        self._part.beat()  # the poll returned: a batch that never ends stops the beats
        timed: Sequence[Outgoing] = ()
        if not records:
            try:
                timed = self._handler.tick()
            except WriteAheadFailed as exc:  # no transaction is open yet
                self._abandoned(records, exc)
                return 0
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
            cuts: dict[tuple[str, int], int] = {}
            if records:
                results = self._handler.decide_batch(records)
                # A stop's drain ran out mid-batch (eventlog/drain.py): commit up to the cut.
                cuts = cut(records, results)
                for record, result in zip(records, results, strict=True):
                    if not before_cut(record, cuts):
                        continue
                    outputs.extend(
                        [set_aside(self.stage, self._dead_letter_topic, record, result)]
                        if isinstance(result, Exception) else result)
                timed = self._handler.tick()
            outputs.extend(timed)
            # Decided: producing and committing wait on Kafka, each call bounded.
            self._part.beat(blocking_s=self._commit_bound_s)
            self._producer.produce(outputs)
            if self._before_commit is not None:
                self._before_commit()
            if records:
                self._producer.send_offsets(
                    self._recovery.with_restore_points(self._next_offsets(records, cuts)),
                    self._consumer.consumer_group_metadata())
            self._producer.commit()
        except (KafkaException, TransactionFailed, WriteAheadFailed) as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if not isinstance(exc, TransactionFailed):
                self._producer.fail(error)  # a write ahead failed (error None): abort
            self._abandoned(records, exc)
            return 0
        self._handler.committed()
        if cuts:
            # Read the records past the cut again, on a state rebuilt before the next batch.
            self._rewind([r for r in records if not before_cut(r, cuts)])
            self._stale = True
            records = [r for r in records if before_cut(r, cuts)]
            log.info("%s: batch committed up to the records not carried out before the stop's "
                     "deadline (%s)", self.stage,
                     ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(cuts.items())))
        LOOP_BATCHES.labels(self.stage, "committed").inc()
        LOOP_RECORDS.labels(self.stage).inc(len(records))
        if records:
            self._lag.processed(records[-1].timestamp_ms)
        self._lag.measure(self._consumer)
        return len(records)

    def _abandoned(self, records: Sequence[Consumed], exc: Exception) -> None:
        """The batch is not committed: read it again, on a state rebuilt from the log (which
        holds whatever the handler wrote ahead, eventlog/write_ahead.py)."""
        self._rewind(records)
        self._handler.aborted()
        self._recovery.rebuild()
        LOOP_BATCHES.labels(self.stage, "aborted").inc()
        log.warning("%s: batch of %d aborted (%s); it will be read again",
                    self.stage, len(records), exc)

    def _records(self, messages: list[Any]) -> list[Consumed]:
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
        return records

    def _next_messages(self) -> list[Any]:
        """What is already fetched, up to a batch; if nothing, wait for one record
        (eventlog/fetching.py)."""
        messages = gathered(self._consumer, self._batch_size, self._poll_timeout_s,
                            self._linger_s, self._recovery.raise_assign_failure)
        # Every consume may have run the rebalance callback: never decide a batch on a
        # state whose restore failed.
        self._recovery.raise_assign_failure()
        return self._recovery.without_stale(messages)

    @property
    def producer(self) -> TransactionalProducer:
        return self._producer

    def close(self) -> None:
        self._part.not_ready("stopped")
        try:
            self._producer.close()
        finally:
            # Without close() the group waits a whole session timeout before reassigning.
            self._consumer.close()

    @staticmethod
    def _next_offsets(records: Sequence[Consumed],
                      cuts: dict[tuple[str, int], int] | None = None) -> list[TopicPartition]:
        """Per partition, the offset after its last record; at a cut, the cut's record."""
        last: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            last[key] = max(last.get(key, -1), record.offset)
        return [TopicPartition(t, p, (cuts or {}).get((t, p), offset + 1))
                for (t, p), offset in last.items()]

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
