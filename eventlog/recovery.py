"""A stateful handler's recovery: its state restored from the log at assignment, forgotten at
revocation, rebuilt after an aborted batch; and a batch kept clear of partitions revoked while
it was gathered. Restore points (`eventlog/restore_points.py`) bound how far back a restore
reads."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from katagate.eventlog import restore_points
from katagate.eventlog.clients import new_reader
from katagate.eventlog.errors import ConsumerFailed
from katagate.eventlog.handler import Handler
from katagate.eventlog.health import Health, Part
from katagate.eventlog.read_to_end import last_stable_offsets, read_to_end, watermarks
from katagate.eventlog.records import Consumed
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.stuck_offsets import CommittedOffsets

log = logging.getLogger(__name__)

Place = tuple[str, int]
BEAT_EVERY_RECORDS = 1000  # a long restore still beats: it runs inside the loop's poll


class Recovery:
    def __init__(self, settings: KafkaSettings, stage: str, handler: Handler,
                 consumer: Consumer, offsets: CommittedOffsets, part: Part | None = None
                 ) -> None:
        self._settings = settings
        # Readiness: in the group with its partitions (maybe none) restored (eventlog/health.py).
        self._part = part or Health().part(stage)
        self._stage = stage
        self._handler = handler
        self._consumer = consumer
        self._offsets = offsets
        self._assign_failed: Exception | None = None
        # Partitions revoked while the current batch was gathered (see without_stale).
        self.revoked_in_batch: set[Place] = set()

    # -- the consumer's rebalance callbacks ------------------------------------------------

    def on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._handler.stateful:
            # An exception escaping a rebalance callback comes out of poll() as a bare
            # KafkaError, which no `except` catches: keep it and raise it properly after.
            try:
                self.restore(partitions)
            except Exception as exc:
                self._assign_failed = exc
                self._part.not_ready("restore_failed", type(exc).__name__)
                return
        self._assigned(len(partitions))

    def on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._part.not_ready("rebalancing", "partitions revoked; waiting for the group")
        self.revoked_in_batch.update((tp.topic, tp.partition) for tp in partitions)
        if self._handler.stateful:
            self._handler.forget([(tp.topic, tp.partition) for tp in partitions])

    def raise_assign_failure(self) -> None:
        failed, self._assign_failed = self._assign_failed, None
        if failed is not None:
            # The handler's state is partly restored: only a new loop (and handler) is safe.
            raise ConsumerFailed(f"{self._stage}: restoring assigned partitions failed: "
                                 f"{failed}") from failed

    def assign_all(self, topics: list[str]) -> None:
        """A single writer reads every partition itself instead of sharing them in a group."""
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in self._consumer.list_topics(topic, timeout=self._settings.request_timeout_s)
            .topics[topic].partitions
        ]
        committed = self._offsets.read(partitions)
        if self._handler.stateful:
            self.restore(committed)
        self._assigned(len(committed))
        self._consumer.assign([
            TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0
                           else OFFSET_BEGINNING)
            for tp in committed
        ])

    def rebuild(self) -> None:
        """After an aborted batch: the state changed eagerly for it, so read it again."""
        if self._handler.stateful:
            assigned = list(self._consumer.assignment())
            self._handler.forget([(tp.topic, tp.partition) for tp in assigned])
            self.restore(assigned)
            self._assigned(len(assigned))

    def _assigned(self, count: int) -> None:
        if count:
            self._part.ready("ready", f"{count} partitions restored")
        else:  # more instances than partitions: a member in reserve
            self._part.ready("standing_by", "in the group, no partitions assigned")

    # -- restore ----------------------------------------------------------------------------

    def restore(self, partitions: list[TopicPartition]) -> None:
        """Give the handler every committed record from its restore point to the group's
        committed offset; and, to a handler that folds its own outputs, every record after it to
        the end (see `Handler.folds_own_outputs`)."""
        committed = self._offsets.read(
            [TopicPartition(tp.topic, tp.partition) for tp in partitions])
        ends = {(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset > 0}
        # Outputs written ahead may follow a partition's first batch, never committed.
        ahead_from = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed
                      } if self._handler.writes_ahead else ends
        if not ahead_from:
            return
        # Where each partition's state begins, if its commit says (older commits do not).
        points = {(tp.topic, tp.partition): restore_points.decode(tp.metadata, tp.offset)
                  for tp in committed if tp.offset > 0}
        starts = {key: OFFSET_BEGINNING if point is None else point
                  for key, point in points.items()}
        # A point whose records retention has removed: the earliest there is.
        reader = new_reader(self._settings, f"restore-{self._stage}",
                            **{"auto.offset.reset": "earliest"})
        timeout = self._settings.request_timeout_s
        began = time.monotonic()
        restored = 0
        self._part.not_ready("restoring", f"{len(ends)} partitions")
        try:
            for message in read_to_end(reader, starts, ends, timeout):
                self._handler.restore(Consumed.from_message(message))
                restored = self._read_one(restored, len(ends))
            if self._handler.folds_own_outputs:
                tails = (self._high_watermarks(list(ahead_from)) if self._handler.writes_ahead
                         else last_stable_offsets(reader, list(ahead_from), timeout))
                ahead = restored
                for message in read_to_end(reader, ahead_from, tails, timeout):
                    self._handler.restore_ahead(Consumed.from_message(message))
                    ahead = self._read_one(ahead, len(ends))
            # The partitions wait for it: ops read it after a rebalance.
            log.info("%s: restored state from %d records of %d partitions in %.1f s (%d from "
                     "their start)", self._stage, restored, len(ends), time.monotonic() - began,
                     sum(1 for point in points.values() if point is None))
        finally:
            reader.close()

    def _high_watermarks(self, places: list[Place]) -> dict[Place, int]:
        """The ends of the partitions as written, committed or not (a read_committed reader
        sees only to the last stable offset)."""
        probe = new_reader(self._settings, f"restore-{self._stage}",
                           **{"isolation.level": "read_uncommitted"})
        try:
            return {place: watermarks(probe, place, self._settings.request_timeout_s)[1]
                    for place in places}
        finally:
            probe.close()

    def _read_one(self, restored: int, partitions: int) -> int:
        restored += 1
        if restored % BEAT_EVERY_RECORDS == 0:
            self._part.beat()
            self._part.not_ready("restoring", f"{restored} records of {partitions} "
                                              "partitions read")
        return restored

    # -- a batch and the partitions revoked while it was gathered ------------------------------

    def without_stale(self, messages: list[Any]) -> list[Any]:
        """Drop the records of partitions revoked while the batch was gathered: the state has
        forgotten them (docs/decisions/0002-partitions-revoked-during-a-batch.md). A partition
        assigned again within the gather is read again from its committed offset."""
        if not self.revoked_in_batch:
            return messages
        kept = [m for m in messages
                if (m.topic(), m.partition()) not in self.revoked_in_batch]
        if len(kept) == len(messages):
            return messages
        current = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        assigned = [TopicPartition(t, p) for t, p in self.revoked_in_batch if (t, p) in current]
        try:
            for tp in self._offsets.read(assigned) if assigned else []:
                self._consumer.seek(TopicPartition(
                    tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        except KafkaException as exc:
            # Without the seek those records would be skipped: start the part over instead.
            raise ConsumerFailed(f"{self._stage}: could not read a partition again after a "
                                 f"rebalance: {exc}") from exc
        log.info("%s: %d records of partitions revoked during the batch set aside", self._stage,
                 len(messages) - len(kept))
        return kept

    def with_restore_points(self, offsets: list[TopicPartition]) -> list[TopicPartition]:
        if not self._handler.stateful:
            return offsets
        marked = []
        for tp in offsets:
            if (tp.topic, tp.partition) in self.revoked_in_batch:
                # No point from a state that forgot the partition: the next restore reads it
                # from its start (docs/decisions/0002-partitions-revoked-during-a-batch.md).
                marked.append(tp)
                continue
            point = self._handler.restore_point(tp.topic, tp.partition)
            start = tp.offset if point is None else min(point, tp.offset)
            marked.append(TopicPartition(tp.topic, tp.partition, tp.offset,
                                         restore_points.encode(start)))
        return marked
