"""Committed offsets that stay unstable because Kafka left a transaction's offset commit hanging
(a broker crash can lose its marker): past any transaction's life, the stage ends it with the last
stable offsets under its own transactional id. Why and how:
docs/decisions/0001-ending-a-hanging-offset-commit.md."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from katagate.eventlog.clients import new_consumer
from katagate.eventlog.errors import KatagateError
from katagate.eventlog.metrics import HANGING_OFFSET_COMMITS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.settings import KafkaSettings

log = logging.getLogger(__name__)

# Kafka's default transaction.abort.timed.out.transaction.cleanup.interval.ms, and a margin.
COORDINATOR_SWEEP_S = 10.0
MARGIN_S = 20.0


def hanging_after_s(settings: KafkaSettings) -> float:
    """How long committed offsets may stay unstable before the commit is taken as hanging."""
    return settings.transaction_timeout_ms / 1000 + COORDINATOR_SWEEP_S + MARGIN_S


def stable_committed(settings: KafkaSettings, group_id: str,
                     partitions: list[TopicPartition]) -> list[TopicPartition] | None:
    """The group's committed offsets as the coordinator holds them, pending transactional
    commits left out (an offset fetch that does not ask for stability); None if the coordinator
    does not answer either, which is an outage, not a hanging commit."""
    # librdkafka asks for stable offsets unless the consumer reads uncommitted.
    reader = outsider(settings, group_id, "stable-offsets", isolation_level="read_uncommitted")
    try:
        return list(reader.committed(partitions, timeout=settings.request_timeout_s))
    except KafkaException:
        return None
    finally:
        reader.close()


def outsider(settings: KafkaSettings, group_id: str, role: str,
             isolation_level: str = "read_committed") -> Consumer:
    """A consumer of the group that never subscribes, so never joins it: it only asks the
    coordinator, or lends its group metadata (no member id, no generation) to a commit."""
    return new_consumer(settings, {"group.id": group_id,
                                   "client.id": f"{role}-{uuid.uuid4().hex[:8]}",
                                   "isolation.level": isolation_level,
                                   "enable.auto.commit": False})


def timed_out(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return error is not None and error.code() in (KafkaError._TIMED_OUT,
                                                  KafkaError.UNSTABLE_OFFSET_COMMIT)


class OffsetsHanging(KatagateError):
    """Committed offsets still unstable after this instance ended its own hanging commit."""


class CommittedOffsets:
    """Reads a group's committed offsets for a stage's loop, and ends a hanging offset commit
    of the stage's own transactional id (see the module docstring)."""

    def __init__(self, settings: KafkaSettings, *, stage: str, group_id: str,
                 producer: TransactionalProducer, consumer: Consumer,
                 hanging_after: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._stage = stage
        self._group_id = group_id
        self._producer = producer
        self._consumer = consumer
        self._clock = clock
        self._hanging_after = (hanging_after if hanging_after is not None
                               else hanging_after_s(settings))

    def read(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The committed offsets; waits while they are unstable, ends a hanging commit of this
        instance's transactional id, and raises `OffsetsHanging` if that did not help (the
        caller's restart tries again later; called from a rebalance callback, it must not
        wait for ever)."""
        unstable_since: float | None = None
        ended = False
        while True:
            try:
                return list(self._consumer.committed(partitions,
                                                     timeout=self._settings.request_timeout_s))
            except KafkaException as exc:
                if not timed_out(exc):
                    raise
                stable = stable_committed(self._settings, self._group_id, partitions)
                if stable is None:
                    raise  # the coordinator does not answer at all: an outage
                if ended:
                    raise OffsetsHanging(
                        f"{self._stage}: the committed offsets of group {self._group_id} are "
                        "still unstable after this instance ended its own hanging commit: "
                        "another transactional id holds them (kafka-transactions.sh "
                        "find-hanging, then abort)") from exc
                now = self._clock()
                unstable_since = now if unstable_since is None else unstable_since
                waited = now - unstable_since
                if waited < self._hanging_after:
                    log.warning("%s: committed offsets of group %s are unstable (a transaction "
                                "is committing them); waited %.0f s of %.0f", self._stage,
                                self._group_id, waited, self._hanging_after)
                    continue
                self._end_hanging(stable)
                ended = True

    def _end_hanging(self, stable: list[TopicPartition]) -> None:
        # The metadata (a restore point) goes with its offset; without one, the next
        # restore reads from the start.
        offsets = [TopicPartition(tp.topic, tp.partition, max(tp.offset, 0), tp.metadata)
                   if tp.metadata is not None
                   else TopicPartition(tp.topic, tp.partition, max(tp.offset, 0))
                   for tp in stable]
        log.error("%s: the committed offsets of group %s stayed unstable for over %.0f s: a "
                  "transaction's offset commit is hanging (its markers were lost, as after a "
                  "broker crash). Committing the last stable offsets %s under this instance's "
                  "transactional id to end it; if they stay unstable, another transactional id "
                  "holds them (kafka-transactions.sh find-hanging, then abort)", self._stage,
                  self._group_id, self._hanging_after,
                  {f"{tp.topic}[{tp.partition}]": tp.offset for tp in offsets})
        HANGING_OFFSET_COMMITS.labels(self._stage).inc()
        # The group metadata of a consumer that never joins: no member id and no generation,
        # which the coordinator does not check. The stage's own consumer has sat in a rebalance
        # callback all this while, and its membership may be gone (seen: UNKNOWN_MEMBER_ID).
        lender = outsider(self._settings, self._group_id, "hanging-commit")
        try:
            self._producer.begin()
            try:
                self._producer.send_offsets(offsets, lender.consumer_group_metadata())
            except KafkaException as exc:
                # Aborting still writes a marker of our producer id to the offsets partition,
                # which ends the hanging commit too (the offsets then stay the stable ones).
                self._producer.fail(exc.args[0] if exc.args else None)
                raise
            self._producer.commit()  # aborts (or fences) and raises on failure
        finally:
            lender.close()
