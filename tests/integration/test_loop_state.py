"""A stateful handler's state is the fold of its input: restored at assignment from the records
before the committed offset, so a restarted loop continues exactly where it stopped; timers
produce in the loop's transactions too."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import TopicPartition

from katagate.eventlog.clients import new_admin
from katagate.eventlog.handler import Handler
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.topics import TopicNames, TopicSpec, ensure_topics
from tests.integration.kafka_read import read_all

pytestmark = pytest.mark.kafka


class RunningCount(Handler):
    """Emits key:n for the n-th record of each key; ticks once after `tick_after` records."""
    stateful = True


    def __init__(self, out: str, tick_after: int | None = None) -> None:
        self.out = out
        self.counts: Counter[str] = Counter()
        self.tick_after = tick_after
        self.restored = 0

    def decide(self, record: Consumed) -> list[Outgoing]:
        key = (record.key or b"").decode()
        self.counts[key] += 1
        return [Outgoing(self.out, f"{key}:{self.counts[key]}".encode(), record.key)]

    def restore(self, record: Consumed) -> None:
        self.counts[(record.key or b"").decode()] += 1
        self.restored += 1

    def forget(self, partitions) -> None:
        self.counts.clear()  # one input topic: every key lives in the revoked partitions here

    def tick(self) -> list[Outgoing]:
        if self.tick_after is not None and sum(self.counts.values()) >= self.tick_after:
            self.tick_after = None
            return [Outgoing(self.out, b"tick", b"timer")]
        return []


def feed(settings, topic: str, start: int, n: int) -> None:
    producer = TransactionalProducer(settings, f"{settings.topic_prefix}-feed-{start}")
    producer.begin()
    producer.produce(Outgoing(topic, str(i).encode(), f"k{i % 5}".encode())
                     for i in range(start, start + n))
    producer.commit()


def run(settings, handler, topic: str, expect: int) -> None:
    loop = TransactionalLoop(
        settings, stage="count", group_id=f"{settings.topic_prefix}-count",
        transactional_id=f"{settings.topic_prefix}-count", topics=[topic], handler=handler,
        dead_letter_topic=TopicNames(settings.topic_prefix).deadletter, batch_size=7,
    )
    done = 0
    for _ in range(400):
        done += loop.run_once()
        if done >= expect:
            break
    loop.close()
    assert done == expect


def test_a_restarted_stateful_loop_continues_from_its_restored_state(kafka_settings):
    prefix = kafka_settings.topic_prefix
    src, out = f"{prefix}.count-in", f"{prefix}.count-out"
    ensure_topics(new_admin(kafka_settings),
                  kafka_settings, [TopicSpec(src, 3), TopicSpec(out, 1)])
    feed(kafka_settings, src, 0, 30)
    run(kafka_settings, RunningCount(out, tick_after=10), src, 30)

    feed(kafka_settings, src, 30, 20)
    second = RunningCount(out)
    run(kafka_settings, second, src, 20)
    assert second.restored == 30

    values = [r.value.decode() for r in read_all(kafka_settings, out)]
    assert values.count("tick") == 1
    per_key: dict[str, list[int]] = {}
    for value in values:
        if value != "tick":
            key, n = value.split(":")
            per_key.setdefault(key, []).append(int(n))
    assert {k: sorted(v) for k, v in per_key.items()} == {
        f"k{i}": list(range(1, 11)) for i in range(5)
    }


class JobsDoneOnce(Handler):
    """Writes done:N for each job:N into its own input topic, as the decider's stages write
    into the mail partitions they read; its timer redoes any job it does not know as done."""

    stateful = True

    def __init__(self, topic: str, ahead: bool) -> None:
        self.topic = topic
        self.jobs: set[str] = set()
        self.done: set[str] = set()
        self.ahead_read = 0
        self.stop_after_jobs = False
        self.restored_any = self.fired = False
        self.folds_own_outputs = ahead  # type: ignore[misc]

    def _fold(self, record: Consumed) -> None:
        kind, n = (record.value or b"").decode().split(":")
        (self.jobs if kind == "job" else self.done).add(n)

    def decide(self, record: Consumed) -> list[Outgoing]:
        self._fold(record)
        kind, n = (record.value or b"").decode().split(":")
        if kind == "job" and n not in self.done:
            self.done.add(n)
            return [Outgoing(self.topic, f"done:{n}".encode(), b"k")]
        return []

    def restore(self, record: Consumed) -> None:
        self._fold(record)
        self.restored_any = True

    def restore_ahead(self, record: Consumed) -> None:
        if (record.value or b"").startswith(b"done:"):
            self._fold(record)
            self.ahead_read += 1

    def forget(self, partitions) -> None:
        self.jobs.clear()
        self.done.clear()

    def tick(self) -> list[Outgoing]:
        redo = sorted(self.jobs - self.done)
        self.done |= set(redo)
        return [Outgoing(self.topic, f"done:{n}".encode(), b"k") for n in redo]

    def decide_batch(self, records):
        # The timer fires as the restarted loop begins, before its first batch is folded: the
        # moment a state without its own outputs would redo them (deterministically here; in
        # a stage, whenever a timer beats the read-back).
        fired = self.tick() if self.restored_any and not self.fired else []
        self.fired = True
        results = super().decide_batch(records)
        first = results[0]
        results[0] = first if isinstance(first, Exception) else [*fired, *first]
        return results


def run_until_idle(settings, handler: JobsDoneOnce, topic: str) -> None:
    """Runs a loop until it has read the ten jobs (restored or consumed; the group's first
    assignment may take longer than a few idle polls) and then stays idle."""
    loop = TransactionalLoop(
        settings, stage="jobs", group_id=f"{settings.topic_prefix}-jobs",
        transactional_id=f"{settings.topic_prefix}-jobs", topics=[topic], handler=handler,
        dead_letter_topic=TopicNames(settings.topic_prefix).deadletter, batch_size=20,
    )
    idle = 0
    for _ in range(200):
        idle = 0 if loop.run_once() else idle + 1
        if len(handler.jobs) >= 10 and (handler.stop_after_jobs or idle >= 3):
            break
    loop.close()


@pytest.mark.parametrize("ahead", [True, False])
def test_a_restarted_loop_knows_the_outputs_it_wrote_past_its_committed_offset(
        kafka_settings, ahead):
    # Given ten jobs done by a loop that stopped as soon as it had read them: its outputs,
    # written into its own input topic, lie past its committed offset
    topic = f"{kafka_settings.topic_prefix}.jobs"
    ensure_topics(new_admin(kafka_settings),
                  kafka_settings, [TopicSpec(topic, 1)])
    producer = TransactionalProducer(kafka_settings, f"{kafka_settings.topic_prefix}-jobs")
    producer.begin()
    producer.produce(Outgoing(topic, f"job:{n}".encode(), b"k") for n in range(10))
    producer.commit()
    first = JobsDoneOnce(topic, ahead)
    first.stop_after_jobs = True
    run_until_idle(kafka_settings, first, topic)
    # When it restarts and its timer fires
    again = JobsDoneOnce(topic, ahead)
    run_until_idle(kafka_settings, again, topic)
    done = [r.value for r in read_all(kafka_settings, topic)
            if r.value.startswith(b"done:")]
    if ahead:
        # Then with restore_ahead it knows them all: nothing is done twice
        assert again.ahead_read >= 1
        assert sorted(done) == sorted({f"done:{n}".encode() for n in range(10)})
    else:
        # (without it, the timer redoes what it cannot see yet: what restore_ahead prevents)
        assert len(done) > 10


class OpenJobs(Handler):
    """Holds the jobs opened (open:N) and not yet closed (close:N); says where the oldest it
    holds began, so that a restore reads from there."""

    stateful = True

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.restored: list[int] = []
        self.handled = 0

    def _fold(self, record: Consumed) -> None:
        kind, n = (record.value or b"").decode().split(":")
        if kind == "open":
            self.open.setdefault(n, record.offset)
        else:
            self.open.pop(n, None)

    def decide(self, record: Consumed) -> list[Outgoing]:
        self._fold(record)
        self.handled += 1
        return []

    def restore(self, record: Consumed) -> None:
        self.restored.append(record.offset)
        self._fold(record)

    def restore_point(self, _topic: str, _partition: int) -> int | None:
        return min(self.open.values(), default=None)

    def forget(self, partitions) -> None:
        self.open.clear()


def run_open_jobs(settings, handler: OpenJobs, topic: str, done) -> dict[str, int]:
    """Runs a loop until `done()`; returns what the handler held then (closing the loop
    revokes the partition, and the handler forgets it)."""
    loop = TransactionalLoop(
        settings, stage="open-jobs", group_id=f"{settings.topic_prefix}-open-jobs",
        transactional_id=f"{settings.topic_prefix}-open-jobs", topics=[topic],
        handler=handler, dead_letter_topic=TopicNames(settings.topic_prefix).deadletter,
        batch_size=50,
    )
    try:
        for _ in range(300):
            loop.run_once()
            if done():
                return dict(handler.open)
        raise AssertionError("the loop did not get there in 300 rounds")
    finally:
        loop.close()


def test_a_restore_begins_where_the_oldest_entry_still_held_began(kafka_settings):
    # Given 100 jobs opened and all but two (opened at offsets 40 and 60) closed
    topic = f"{kafka_settings.topic_prefix}.open-jobs"
    ensure_topics(new_admin(kafka_settings),
                  kafka_settings, [TopicSpec(topic, 1)])
    records = [f"open:{n}" for n in range(100)]
    records += [f"close:{n}" for n in range(100) if n not in (40, 60)]
    producer = TransactionalProducer(kafka_settings, f"{kafka_settings.topic_prefix}-feed")
    producer.begin()
    producer.produce(Outgoing(topic, value.encode(), b"k") for value in records)
    producer.commit()
    first = OpenJobs()
    held = run_open_jobs(kafka_settings, first, topic, lambda: first.handled == len(records))
    assert held == {"40": 40, "60": 60}
    # When a new instance takes the partition over
    again = OpenJobs()
    held_again = run_open_jobs(kafka_settings, again, topic, lambda: bool(again.restored))
    # Then it read from the oldest open job's record on, and holds what the first held
    assert again.restored[0] == 40
    assert len(again.restored) == len(records) - 40
    assert held_again == held


def test_no_restore_point_is_committed_for_a_partition_revoked_while_the_batch_was_gathered(
        kafka_settings):
    # Records fetched before a revoke are still in the batch; the handler has forgotten the
    # partition, so a point computed from its state would skip what a new owner needs.
    topic = f"{kafka_settings.topic_prefix}.open-jobs-revoked"
    ensure_topics(new_admin(kafka_settings),
                  kafka_settings, [TopicSpec(topic, 2)])
    handler = OpenJobs()
    loop = TransactionalLoop(
        kafka_settings, stage="revoked", group_id=f"{kafka_settings.topic_prefix}-revoked",
        transactional_id=f"{kafka_settings.topic_prefix}-revoked", topics=[topic],
        handler=handler, dead_letter_topic=TopicNames(kafka_settings.topic_prefix).deadletter)
    try:
        loop._recovery.on_revoke(None, [TopicPartition(topic, 0)])
        handler.open = {"7": 3}  # what it holds of the partition it still has
        marked = loop._recovery.with_restore_points([TopicPartition(topic, 0, 10),
                                            TopicPartition(topic, 1, 10)])
        assert [(tp.partition, tp.offset, tp.metadata) for tp in marked] == [
            (0, 10, None), (1, 10, "restore-from:3")]
        loop.run_once()  # a new batch: the revoke belongs to the last one
        marked = loop._recovery.with_restore_points([TopicPartition(topic, 0, 10)])
        assert [tp.metadata for tp in marked] == ["restore-from:3"]
    finally:
        loop.close()


def test_records_of_a_partition_revoked_during_the_batch_are_set_aside_and_read_again(
        kafka_settings):
    # Given a loop that has fetched ten records of its one partition
    topic = f"{kafka_settings.topic_prefix}.open-jobs-stale"
    ensure_topics(new_admin(kafka_settings),
                  kafka_settings, [TopicSpec(topic, 1)])
    producer = TransactionalProducer(kafka_settings, f"{kafka_settings.topic_prefix}-stale")
    producer.begin()
    producer.produce(Outgoing(topic, f"open:{n}".encode(), b"k") for n in range(10))
    producer.commit()
    handler = OpenJobs()
    loop = TransactionalLoop(
        kafka_settings, stage="stale", group_id=f"{kafka_settings.topic_prefix}-stale",
        transactional_id=f"{kafka_settings.topic_prefix}-stale", topics=[topic],
        handler=handler, dead_letter_topic=TopicNames(kafka_settings.topic_prefix).deadletter)
    try:
        fetched: list = []
        for _ in range(100):
            fetched = [m for m in loop._next_messages() if m.error() is None]
            if fetched:
                break
        assert [m.offset() for m in fetched][:1] == [0]
        # When the partition is revoked (and, as here, given back) while the batch is gathered
        loop._recovery.revoked_in_batch.clear()
        loop._recovery.on_revoke(None, [TopicPartition(topic, 0)])
        # Then none of its records is decided on the state that forgot it
        assert loop._recovery.without_stale(fetched) == []
        # and they are read again, from the committed offset (none yet: the start)
        loop._recovery.revoked_in_batch.clear()
        again: list = []
        for _ in range(100):
            again += [m for m in loop._next_messages() if m.error() is None]
            if len(again) >= 10:
                break
        assert [m.offset() for m in again] == list(range(10))
    finally:
        loop.close()
