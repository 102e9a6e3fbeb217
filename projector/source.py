"""Reading the log for a projection: every partition of the given topics, assigned (no group),
`read_committed`, from given positions, decoded to events. Live, following the log with no end
(`poll`); or to given bounds and no further (`read_to`, through eventlog.read_to_end)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from katagate.eventlog.clients import new_admin, new_reader
from katagate.eventlog.fetching import FETCH_WHEN_DRAINED, lingered
from katagate.eventlog.read_to_end import partitions, read_to_end
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.projector.snapshot import Positions
from katagate.schemas import Event, SchemaError, decode_event

log = logging.getLogger(__name__)


def projected_topics(kafka: KafkaSettings) -> list[str]:
    names = TopicNames(kafka.topic_prefix)
    return [names.mail, names.quarantine, names.control]


# Answers that mean the client's idea of a partition's leader is out of date.
_STALE_LEADER = (KafkaError.FENCED_LEADER_EPOCH, KafkaError.NOT_LEADER_FOR_PARTITION,
                 KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.LEADER_NOT_AVAILABLE)


class Read(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    event: Event | None  # None: the record did not decode (skipped, logged)
    value: bytes  # the record as read


class LogReader:
    def __init__(self, kafka: KafkaSettings, topics: Sequence[str],
                 start: Positions | None = None, following: bool = False) -> None:
        """`following`: the live projector's reader, which follows the log as it is written
        (eventlog/fetching.py); a replay keeps librdkafka's read-ahead."""
        self._timeout = kafka.request_timeout_s
        self._consumer = new_reader(kafka, "projector", **{
            "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": True, "fetch.max.bytes": 16 * 1024 * 1024,
            **(FETCH_WHEN_DRAINED if following else {})})
        self._kafka = kafka
        self._admin = new_admin(kafka)
        self.partitions: list[tuple[str, int]] = [
            (topic, p) for topic in topics
            for p in partitions(self._consumer, topic, self._timeout)]
        start = start or {}
        self.positions: Positions = {tp: start.get(tp, 0) for tp in self.partitions}
        self.records_read = 0
        self.undecodable = 0
        self._eof: set[tuple[str, int]] = set()
        self._following = False  # assigned for `poll`

    @property
    def caught_up(self) -> bool:
        """Every partition has been read to its end at least once since its last record."""
        return len(self._eof) >= len(self.partitions)

    def poll(self, max_records: int, timeout_s: float) -> list[Read]:
        """The next records, following the log from the positions: there is no end."""
        if not self._following:
            self._consumer.assign([TopicPartition(t, p, offset or OFFSET_BEGINNING)
                                   for (t, p), offset in self.positions.items()])
            self._following = True
        reads: list[Read] = []
        # What came in over the timeout, fetched at its end: the views are read by people and
        # scrapes, for whom a tenth of a second is nothing, and the mail topic has six readers.
        for message in lingered(self._consumer, max_records, timeout_s):
            error = message.error()
            key = (message.topic() or "", message.partition() or 0)
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._eof.add(key)
                elif error.fatal():
                    raise KafkaException(error)
                else:
                    log.warning("projector: consumer error: %s", error)
                continue
            self._eof.discard(key)
            reads.append(self._read(message))
        return reads

    def read_to(self, bounds: Positions, batch: int = 5000,
                skip: Callable[[bytes], bool] | None = None) -> Iterator[Read]:
        """Every record from the positions up to (not including) each partition's bound, then
        stop; a partition with no bound given is not read. A record `skip` answers True for is
        not decoded (its event is None, and it is not counted undecodable)."""
        self._following = False  # read_to_end assigns for itself: a later `poll` assigns anew
        ends = {key: bounds.get(key, 0) for key in self.positions}
        for message in read_to_end(self._consumer, dict(self.positions), ends, self._timeout,
                                   batch):
            yield self._read(message, skip)

    def _read(self, message: Message, skip: Callable[[bytes], bool] | None = None) -> Read:
        key = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        self.positions[key] = offset + 1
        self.records_read += 1
        value = message.value() or b""
        if skip is not None and skip(value):
            return Read(key[0], key[1], offset, message.timestamp()[1], None, value)
        try:
            event: Event | None = decode_event(value)
        except SchemaError as exc:
            self.undecodable += 1
            log.warning("projector: skipping %s[%d]@%d: %s", key[0], key[1], offset, exc)
            event = None
        return Read(key[0], key[1], offset, message.timestamp()[1], event, value)

    def end_offsets(self) -> Positions:
        """The end (last stable offset) of every partition now, in one request."""
        return self._list_offsets(OffsetSpec.latest())  # type: ignore[no-untyped-call]

    def offsets_at(self, time_ms: int) -> Positions:
        """Per partition, the first offset of a record stamped after `time_ms` (the end if
        none is): reading up to it gives the log as it stood at that instant."""
        found = self._list_offsets(OffsetSpec.for_timestamp(time_ms + 1))
        ends = self.end_offsets()
        return {key: offset if offset >= 0 else ends[key] for key, offset in found.items()}

    def _list_offsets(self, spec: OffsetSpec) -> Positions:
        futures = self._admin.list_offsets(
            {TopicPartition(t, p): spec for t, p in self.partitions},
            isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=self._timeout)
        try:
            return {(tp.topic, tp.partition): int(future.result().offset)
                    for tp, future in futures.items()}
        except KafkaException as exc:
            if exc.args and exc.args[0].code() in _STALE_LEADER:
                # After a broker restart librdkafka's admin client kept asking with the old
                # leader epoch for minutes (seen in the broker crash test): start afresh.
                self._admin = new_admin(self._kafka)
            raise

    def close(self) -> None:
        self._consumer.close()
