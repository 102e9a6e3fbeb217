"""The checkpointer: the single writer of `katagate.audit`.

It stands for election on the audit topic and writes with one fixed transactional id per
namespace, so a new owner (or `checkpoint_once`) fences an old one before it reads where the
chains stand; a fenced or failed writer starts over from the checkpoints in the log. It resumes
each partition after the last checkpoint signed by its own key.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from katagate.audit import metrics as metrics_shown
from katagate.audit.chain import ZERO_HEAD, LogRecord, record_bytes
from katagate.audit.checkpoint import HEADERS, Checkpoint, encode, record_key, sign, signature_valid
from katagate.audit.keys import AuditKey, load_or_create
from katagate.audit.reading import audited_topics, from_message, new_consumer
from katagate.audit.settings import AuditSettings
from katagate.audit.verify import read_checkpoints
from katagate.audit.witness import WitnessError, append
from katagate.eventlog.election import Election
from katagate.eventlog.errors import KafkaUnavailable
from katagate.eventlog.fetching import lingered
from katagate.eventlog.health import Health, Part
from katagate.eventlog.health_server import serve_health
from katagate.eventlog.preflight import prepare_stage
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import WEDGED_GRACE_S, ProducerFenced, TransactionalProducer
from katagate.eventlog.read_to_end import last_stable_offsets, partitions, read_to_end
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
Place = tuple[str, int]  # (relative topic, partition)


def utc_now() -> datetime:
    return datetime.now(UTC)


def transactional_id(kafka: KafkaSettings) -> str:
    return PRINCIPALS["audit"].transactional_id(kafka.topic_prefix, "audit-checkpointer")


@dataclass
class OpenRange:
    """The records of one partition since its last checkpoint, hashed as they arrive."""

    previous_head: bytes
    position: int
    head: bytes
    count: int = 0
    first_offset: int = -1
    last_offset: int = -1
    since: float = 0.0  # monotonic time of the first record of the range
    signed_at: str | None = None  # created_at of the checkpoint before it, when resumed

    @classmethod
    def after(cls, head: bytes, position: int) -> OpenRange:
        return cls(previous_head=head, position=position, head=head)

    def add(self, record: LogRecord, now: float) -> None:
        if self.count == 0:
            self.first_offset, self.since = record.offset, now
        self.head = hashlib.sha256(self.head + record_bytes(record)).digest()
        self.last_offset = record.offset
        self.count += 1

    def signed(self, namespace: str, place: Place, created_at: datetime,
               key: AuditKey) -> Checkpoint:
        unsigned = Checkpoint(
            namespace=namespace, topic=place[0], partition=place[1], position=self.position,
            count=self.count, first_offset=self.first_offset, last_offset=self.last_offset,
            previous_head=self.previous_head.hex(), head=self.head.hex(),
            created_at=created_at.isoformat(), key_id=key.key_id,
        )
        return sign(unsigned, key.private_key)

    def next(self) -> OpenRange:
        return OpenRange.after(self.head, self.position + self.count)


def resume(kafka: KafkaSettings, key: AuditKey) -> dict[Place, tuple[OpenRange, int]]:
    """Per partition: the open range after its last checkpoint signed by `key`, and the offset
    to read from."""
    entries, _unreadable = read_checkpoints(kafka, TopicNames(kafka.topic_prefix).audit)
    state: dict[Place, tuple[OpenRange, int]] = {}
    for entry in entries:
        cp = entry.checkpoint
        if not signature_valid(cp, key.public_key):
            log.warning("audit: ignoring checkpoint %s, not signed by this key", entry.index)
            continue
        resumed = OpenRange.after(bytes.fromhex(cp.head), cp.end)
        resumed.signed_at = cp.created_at
        state[(cp.topic, cp.partition)] = (resumed, cp.last_offset + 1)
    return state


def _open_ranges(
    kafka: KafkaSettings, key: AuditKey, consumer: Consumer
) -> tuple[dict[Place, OpenRange], dict[tuple[str, int], int]]:
    state = resume(kafka, key)
    ranges: dict[Place, OpenRange] = {}
    starts: dict[tuple[str, int], int] = {}
    for rel, topic in audited_topics(kafka.topic_prefix).items():
        for p in partitions(consumer, topic, kafka.request_timeout_s):
            open_range, start = state.get((rel, p), (OpenRange.after(ZERO_HEAD, 0), 0))
            ranges[(rel, p)] = open_range
            starts[(topic, p)] = start
    return ranges, starts


def _write(producer: TransactionalProducer, audit_topic: str,
           checkpoints: list[Checkpoint], witness: Path | None) -> None:
    producer.begin()
    producer.produce([
        Outgoing(topic=audit_topic, value=encode(cp), key=record_key(cp), headers=HEADERS)
        for cp in checkpoints
    ])
    producer.commit()
    metrics_shown.TRANSACTIONS.inc()
    # Only after the commit: the witness never holds a checkpoint the log was not given.
    if witness is not None:
        append(witness, checkpoints)


def checkpoint_once(kafka: KafkaSettings, key: AuditKey, clock: Clock = utc_now, *,
                    witness: Path | None = None) -> int:
    """Checkpoint every audited partition up to its last stable offset now, in one transaction
    (then append them to the `witness` file); return the number of checkpoints written. Fences a
    running checkpointer of the namespace (which then starts over from the log)."""
    names = TopicNames(kafka.topic_prefix)
    relative = {topic: rel for rel, topic in audited_topics(kafka.topic_prefix).items()}
    producer = TransactionalProducer(kafka, transactional_id(kafka))
    consumer = new_consumer(kafka)
    try:
        ranges, starts = _open_ranges(kafka, key, consumer)
        ends = last_stable_offsets(consumer, starts, kafka.request_timeout_s)
        now = time.monotonic()
        for message in read_to_end(consumer, starts, ends, kafka.request_timeout_s):
            record = from_message(message)
            ranges[(relative[record.topic], record.partition)].add(record, now)
        created = clock()
        checkpoints = [r.signed(kafka.topic_prefix, place, created, key)
                       for place, r in sorted(ranges.items()) if r.count]
        if checkpoints:
            _write(producer, names.audit, checkpoints, witness)
        return len(checkpoints)
    finally:
        consumer.close()
        producer.close()


def run_checkpointer(kafka: KafkaSettings, settings: AuditSettings, stop: threading.Event,
                     clock: Clock = utc_now) -> None:
    """Stand for election; while owner, checkpoint each partition every `every_records` records
    or `every_s` seconds after its first uncovered record. Returns when `stop` is set."""
    kafka = prepare_stage(kafka, "audit")
    key = load_or_create(settings.key_dir)
    health = Health(settings.health_stall_s)
    metrics = serve_health(settings.metrics_host, settings.metrics_port, health)
    if metrics is not None:
        metrics_shown.EVERY_RECORDS.set(settings.every_records)
        metrics_shown.EVERY_SECONDS.set(settings.every_s)
    part = health.part("checkpointer")
    witness = settings.witness_file(kafka.topic_prefix)
    log.info("audit: signing key %s, witness %s", key.key_id, witness)
    election = Election(kafka, "audit-checkpointer", TopicNames(kafka.topic_prefix).audit,
                        settings.instance_id)
    try:
        while not stop.is_set():
            part.beat()
            if not election.tick():
                metrics_shown.forget()
                part.ready("standing_by", "another instance is the checkpointer")
                stop.wait(0.2)
                continue
            try:
                _serve(kafka, settings, key, election, stop, clock, witness, part)
            except (KafkaUnavailable, ProducerFenced, WitnessError) as exc:
                part.not_ready("restarting", type(exc).__name__)
                log.warning("audit checkpointer stopped (%s); starting over in 2 s", exc)
                stop.wait(2)
    finally:
        metrics_shown.forget()
        election.close()
        if metrics is not None:
            metrics.close()


def _serve(kafka: KafkaSettings, settings: AuditSettings, key: AuditKey, election: Election,
           stop: threading.Event, clock: Clock, witness: Path, part: Part) -> None:
    log.info("audit: this instance is the checkpointer")
    # Fencing, then reading where the chains stand (the audit topic), before the first poll.
    part.not_ready("restoring", "reading the last checkpoints")
    part.beat(blocking_s=2 * kafka.request_timeout_s)
    names = TopicNames(kafka.topic_prefix)
    relative = {topic: rel for rel, topic in audited_topics(kafka.topic_prefix).items()}
    producer = TransactionalProducer(kafka, transactional_id(kafka))  # fences the previous owner
    consumer = new_consumer(kafka, following=True)
    try:
        ranges, starts = _open_ranges(kafka, key, consumer)
        for place, open_range in ranges.items():
            metrics_shown.show_checkpoint(place, open_range.signed_at)
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
        part.ready("checkpointing", f"{len(ranges)} partitions")
        while not stop.is_set() and election.tick():
            ready: list[Checkpoint] = []
            now = time.monotonic()
            # Checkpoints wait seconds: take what came in over a fifth of one, fetched at its end.
            messages = lingered(consumer, 1000, 0.2)
            part.beat()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaUnavailable(f"audit checkpointer: {error}")
                    continue
                record = from_message(message)
                place = (relative[record.topic], record.partition)
                ranges[place].add(record, now)
                if ranges[place].count >= settings.every_records:
                    ready.append(ranges[place].signed(kafka.topic_prefix, place, clock(), key))
                    ranges[place] = ranges[place].next()
            for place, open_range in sorted(ranges.items()):
                if open_range.count and now - open_range.since >= settings.every_s:
                    ready.append(open_range.signed(kafka.topic_prefix, place, clock(), key))
                    ranges[place] = open_range.next()
            if ready:
                part.beat(blocking_s=kafka.request_timeout_s + WEDGED_GRACE_S)  # a commit
                # A failed write raises: the caller starts over from what the log holds.
                _write(producer, names.audit, ready, witness)
                log.info("audit: wrote %d checkpoints", len(ready))
                for cp in ready:
                    metrics_shown.show_checkpoint((cp.topic, cp.partition), cp.created_at)
            _show_waiting(consumer, ranges, relative)
    finally:
        # Kept on a failed write: the same owner starts over and its records still wait (a
        # cleared gauge would end the alerts on them). Cleared when it is no longer the owner.
        consumer.close()
        producer.close()


def _show_waiting(consumer: Consumer, ranges: dict[Place, OpenRange],
                  relative: dict[str, str]) -> None:
    """Per partition, the records past its last checkpoint: those read and waiting, and those
    not read yet (a reader that falls behind or stalls leaves them out of the open range)."""
    try:
        positions = consumer.position(consumer.assignment())
        ends = [consumer.get_watermark_offsets(tp, cached=True) for tp in positions]
    except KafkaException as exc:  # informative only: the read ones are shown
        log.debug("audit: partition ends unavailable: %s", exc)
        positions, ends = [], []
    unread = {(relative[tp.topic], tp.partition): (tp.offset, end[1])
              for tp, end in zip(positions, ends, strict=True) if end is not None}
    for place, open_range in ranges.items():
        position, end = unread.get(place, (-1, -1))
        metrics_shown.show_uncovered(place, metrics_shown.not_covered(open_range.count,
                                                                      position, end))
