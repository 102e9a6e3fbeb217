"""A loop whose handler writes outputs ahead of its transaction (eventlog/write_ahead.py), killed
before its commit, and restarted while another producer's transaction is open before the output
it wrote ahead: the restore reads past that transaction (to the high watermark, once the
transaction ends), so the job is not done twice. Reading only to the last stable offset would
miss the output and do it again. Also: outputs written ahead of a partition's first commit; and
a write ahead that fails (in a batch, or in a timer with no batch) aborts the batch and rebuilds
the state instead of setting the record aside or stopping the loop."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence

import pytest
from confluent_kafka import KafkaError, KafkaException

from katagate.eventlog.handler import Handler
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.metrics import LOOP_BATCHES
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.topics import TopicNames
from katagate.eventlog.write_ahead import WriteAhead, WriteAheadFailed
from tests.conftest import ensure_namespace
from tests.integration.kafka_read import read_all

pytestmark = pytest.mark.kafka


class Killed(BaseException):
    """The process dies between the write ahead and the commit: nothing catches it."""


class Courier(Handler):
    """Does `job:N` (an effect outside Kafka, counted) once, recording `done:N` ahead."""

    stateful = True
    folds_own_outputs = True
    writes_ahead = True

    def __init__(self, topic: str, ahead: WriteAhead, effects: Counter[int]) -> None:
        self.topic, self.ahead, self.effects = topic, ahead, effects
        self.done: set[int] = set()

    def decide(self, record: Consumed) -> Sequence[Outgoing]:
        kind, _, n = (record.value or b"").decode().partition(":")
        if kind == "job" and int(n) not in self.done:
            self.effects[int(n)] += 1
            self.ahead.write([Outgoing(self.topic, f"done:{n}".encode(), partition=0)])
        self._fold(record)
        return []

    def _fold(self, record: Consumed) -> None:
        kind, _, n = (record.value or b"").decode().partition(":")
        if kind == "done":
            self.done.add(int(n))

    def restore(self, record: Consumed) -> None:
        self._fold(record)

    def restore_ahead(self, record: Consumed) -> None:
        self._fold(record)

    def forget(self, partitions) -> None:
        self.done.clear()


def write(settings, topic: str, value: bytes, txn: str) -> TransactionalProducer:
    """`value` in a transaction of its own, left open: the caller commits it."""
    producer = TransactionalProducer(settings, f"{settings.topic_prefix}-{txn}")
    producer.begin()
    producer.produce([Outgoing(topic, value, partition=0)])
    producer.flush()
    return producer


def loop_of(settings, topic: str, handler: Courier, crash_after: int | None = None
            ) -> TransactionalLoop:
    """`crash_after`: killed before the commit of the batch that does that job."""
    def before_commit() -> None:
        if crash_after is not None and handler.effects[crash_after]:
            raise Killed

    for _ in range(30):
        try:
            return TransactionalLoop(
                settings, stage="courier", group_id=f"{settings.topic_prefix}-courier",
                transactional_id=f"{settings.topic_prefix}-courier", topics=[topic],
                handler=handler, dead_letter_topic=TopicNames(settings.topic_prefix).deadletter,
                manual_assignment=True, before_commit=before_commit)
        except KafkaException as exc:  # a fresh broker's group coordinator is still loading
            if exc.args[0].code() != KafkaError.NOT_COORDINATOR:
                raise
            time.sleep(1)
    raise AssertionError("the group coordinator never answered")


def run_until(loop: TransactionalLoop, done) -> None:
    deadline = time.monotonic() + 60
    while not done() and time.monotonic() < deadline:
        loop.run_once()
    assert done()


def test_a_restore_reads_what_was_written_ahead_past_an_open_transaction(kafka_bootstrap):
    # The open transaction must outlive the restart: a long transaction timeout.
    settings = ensure_namespace(kafka_bootstrap, mail_partitions=1, request_timeout_s=20.0,
                                transaction_timeout_ms=120_000)
    topic = TopicNames(settings.topic_prefix).mail
    effects: Counter[int] = Counter()
    ahead = WriteAhead.for_stage(settings, "courier-ahead")
    try:
        # Given job 0 done and committed
        write(settings, topic, b"job:0", "feed-0").commit()
        first = loop_of(settings, topic, Courier(topic, ahead, effects))
        run_until(first, lambda: effects[0] == 1)
        first.close()
        # And job 1, then another producer's transaction left open, then the loop killed after
        # doing job 1 and writing done:1 ahead, before its commit
        killed = loop_of(settings, topic, Courier(topic, ahead, effects), crash_after=1)
        write(settings, topic, b"job:1", "feed-1").commit()
        other = write(settings, topic, b"other", "other")
        with pytest.raises(Killed):
            run_until(killed, lambda: False)
        assert effects[1] == 1
        # When the loop starts again while that transaction is still open (it ends soon after)
        threading.Timer(2.0, other.commit).start()
        restarted = loop_of(settings, topic, Courier(topic, ahead, effects))
        for _ in range(30):
            restarted.run_once()
        restarted.close()
        # Then job 1 was not done again
        assert effects == Counter({0: 1, 1: 1})
    finally:
        ahead.close()


def test_outputs_written_ahead_of_a_partitions_first_commit_are_restored(kafka_bootstrap):
    settings = ensure_namespace(kafka_bootstrap, mail_partitions=1)
    topic = TopicNames(settings.topic_prefix).mail
    effects: Counter[int] = Counter()
    ahead = WriteAhead.for_stage(settings, "courier-ahead")
    try:
        write(settings, topic, b"job:0", "feed-0").commit()
        killed = loop_of(settings, topic, Courier(topic, ahead, effects), crash_after=0)
        with pytest.raises(Killed):
            run_until(killed, lambda: False)
        restarted = loop_of(settings, topic, Courier(topic, ahead, effects))
        for _ in range(10):
            restarted.run_once()
        restarted.close()
        assert effects == Counter({0: 1})
    finally:
        ahead.close()


class FailingOnce:
    """The writer ahead, failing its first write as a broker that never acknowledged it."""

    def __init__(self, ahead: WriteAhead) -> None:
        self.ahead, self.failed = ahead, False

    def write(self, records):
        if not self.failed:
            self.failed = True
            raise WriteAheadFailed("not acknowledged in 35 s")
        return self.ahead.write(records)


class TimedCourier(Courier):
    """Courier whose timer writes ahead too: `tick` records `tick` once."""

    ticked = 0
    restores = 0

    def tick(self) -> list[Outgoing]:
        if not self.ticked:
            self.ahead.write([Outgoing(self.topic, b"tick", partition=0)])
            self.ticked += 1
        return []

    def forget(self, partitions) -> None:
        super().forget(partitions)
        self.restores += 1


def test_a_failed_write_ahead_aborts_the_batch_and_reads_it_again_on_a_rebuilt_state(
        kafka_bootstrap):
    settings = ensure_namespace(kafka_bootstrap, mail_partitions=1)
    topic = TopicNames(settings.topic_prefix).mail
    effects: Counter[int] = Counter()
    ahead = WriteAhead.for_stage(settings, "courier-ahead")
    try:
        write(settings, topic, b"job:0", "feed-0").commit()
        handler = Courier(topic, FailingOnce(ahead), effects)  # type: ignore[arg-type]
        loop = loop_of(settings, topic, handler)
        aborted = LOOP_BATCHES.labels("courier", "aborted")._value.get()
        # When the job's record is not acknowledged, the loop aborts the batch (no exception
        # escapes), and the batch is read again: the job is done again, its record written once
        run_until(loop, lambda: effects[0] == 2 and 0 in handler.done)
        loop.close()
        assert LOOP_BATCHES.labels("courier", "aborted")._value.get() == aborted + 1
        values = [r.value for r in read_all(settings, topic)]
        assert values.count(b"done:0") == 1
    finally:
        ahead.close()


def test_a_timer_whose_write_ahead_fails_rebuilds_the_state_without_a_transaction(
        kafka_bootstrap):
    settings = ensure_namespace(kafka_bootstrap, mail_partitions=1)
    topic = TopicNames(settings.topic_prefix).mail
    ahead = WriteAhead.for_stage(settings, "courier-ahead")
    try:
        handler = TimedCourier(topic, FailingOnce(ahead), Counter())  # type: ignore[arg-type]
        loop = loop_of(settings, topic, handler)
        restores = handler.restores
        # Nothing to read: the tick runs outside any transaction; its write fails once
        assert loop.run_once() == 0
        assert handler.restores == restores + 1  # rebuilt from the log
        assert loop.run_once() == 0
        loop.close()
        assert [r.value for r in read_all(settings, topic)] == [b"tick"]
    finally:
        ahead.close()
