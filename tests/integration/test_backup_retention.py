"""The Backup on the real broker: `katagate.backup` is compacted without time retention, the
admission's Backup ledger retains stored copies, and a copy it removes gets a tombstone per
chunk key in the same transaction, while a copy still held stays readable; a newly elected
writer folds the ledger from the log and expires the copies past the age limit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from katagate.decider.admission import Admission, new_control_view
from katagate.eventlog.clients import new_admin
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.raw import RawReader, backup_chunks
from katagate.eventlog.records import Outgoing
from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    BackupDeleteRequested,
    BackupRemoved,
    BackupRetained,
    BackupStored,
    ProducerRef,
    RawLocation,
    decode_event,
)
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import wait_for
from tests.integration.test_topics import _config

pytestmark = pytest.mark.kafka
DECIDER = PRINCIPALS["decider"]
REF = ProducerRef(stage="decider", instance="test")


def store_copy(settings, message_id: str, data: bytes, partition: int) -> BackupStored:
    """What apply does: the copy's chunks and its backup.stored in one transaction."""
    names = TopicNames(settings.topic_prefix)
    producer = TransactionalProducer(settings, f"test-backup-{uuid.uuid4().hex[:8]}")
    producer.begin()
    chunked = backup_chunks(names.backup, message_id, data, partition, chunk_bytes=100)
    located = producer.produce_located(chunked.records)
    stored = BackupStored(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), producer=REF,
        message_id=message_id,
        location=RawLocation(topic=names.backup, partition=located[0][0],
                             offsets=[o for _p, o in located], chunk_bytes=100),
        sha256=chunked.sha256)
    producer.produce([Outgoing.event(names.mail, stored)])
    producer.commit()
    producer.close()
    return stored


def write(settings, event) -> None:
    producer = TransactionalProducer(settings, f"test-request-{uuid.uuid4().hex[:8]}")
    producer.begin()
    producer.produce([Outgoing.event(TopicNames(settings.topic_prefix).mail, event)])
    producer.commit()
    producer.close()


def test_the_backup_topic_is_compacted_with_no_time_retention(kafka_settings):
    config = _config(new_admin(kafka_settings), TopicNames(kafka_settings.topic_prefix).backup)
    assert config["cleanup.policy"] == "compact"
    assert "delete" not in config["cleanup.policy"]


def admission_loop(settings, control, clock) -> TransactionalLoop:
    """The admission's single writer as `run_admission` runs it once elected: its ledger folded
    from `katagate.quarantine` at the start."""
    return TransactionalLoop(
        settings, stage="admission",
        group_id=DECIDER.group(settings.topic_prefix, "admission-offsets"),
        producer=TransactionalProducer(
            settings, DECIDER.transactional_id(settings.topic_prefix, "admission")),
        topics=[TopicNames(settings.topic_prefix).mail],
        dead_letter_topic=TopicNames(settings.topic_prefix).deadletter, manual_assignment=True,
        handler=Admission(settings, control, REF, clock))


def test_a_removed_copy_is_tombstoned_and_a_held_copy_stays_readable_until_it_expires(
        kafka_settings):
    names = TopicNames(kafka_settings.topic_prefix)
    # Given two Backup copies stored as apply stores them, 3 chunks each
    kept_id, gone_id = "keep" + uuid.uuid4().hex[:8], "gone" + uuid.uuid4().hex[:8]
    kept_data, gone_data = b"K" * 250, b"G" * 230
    kept = store_copy(kafka_settings, kept_id, kept_data, partition=1)
    gone = store_copy(kafka_settings, gone_id, gone_data, partition=2)
    # And the admission's single writer running on them
    control = new_control_view(kafka_settings)
    control.wait_caught_up(30)
    loop = admission_loop(kafka_settings, control, lambda: datetime.now(UTC))

    def ledger(kind):
        loop.run_once()
        return [e for e in (decode_event(r.value) for r in read_all(kafka_settings,
                                                                    names.quarantine))
                if isinstance(e, kind)]
    try:
        # Then both are retained, with the Backup's usage after each
        retained = wait_for(lambda: len(ledger(BackupRetained)) == 2 and ledger(BackupRetained),
                            60, "both copies retained")
        assert {e.message_id for e in retained} == {kept_id, gone_id}
        assert max(e.copies_in_use for e in retained) == 2
        # When an administrator deletes one
        write(kafka_settings, BackupDeleteRequested(
            event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), producer=REF,
            message_id=gone_id, actor="cli:root"))
        (removed,) = wait_for(lambda: ledger(BackupRemoved), 60, "the copy removed")
    finally:
        loop.close()
    assert (removed.message_id, removed.cause, removed.actor) == (gone_id, "deleted_by_admin",
                                                                  "cli:root")
    assert removed.copies_in_use == 1
    # Then each of its chunk keys has a tombstone in its partition, committed with the removal
    backup = read_all(kafka_settings, names.backup)
    dead = {(r.partition, r.key) for r in backup if r.value is None}
    assert dead == {(gone.location.partition, f"{gone_id}/{i}".encode()) for i in range(3)}
    # And no chunk of the copy still held is tombstoned; it reads back, its digest checked
    assert all(r.value is not None for r in backup if r.key.startswith(kept_id.encode()))
    reader = RawReader(kafka_settings)
    try:
        assert reader.read(names.backup, kept.location.partition, kept.location.offsets,
                           kept_id, kept.sha256) == kept_data
    finally:
        reader.close()

    # When a new single writer is elected 31 days later (the default age limit is 30 days)
    later = datetime.now(UTC) + timedelta(days=31)
    loop = admission_loop(kafka_settings, control, lambda: later)
    try:
        # Then its ledger, folded from the log, holds the one copy, and expires it by age
        expired = wait_for(lambda: [e for e in ledger(BackupRemoved) if e.message_id == kept_id],
                           60, "the held copy expired")
    finally:
        loop.close()
        control.close()
    assert [(e.cause, e.copies_in_use, e.bytes_in_use) for e in expired] == [
        ("expired_age", 0, 0)]
    dead = {(r.partition, r.key) for r in read_all(kafka_settings, names.backup)
            if r.value is None}
    assert {(kept.location.partition, f"{kept_id}/{i}".encode()) for i in range(3)} <= dead
