"""Crash-and-restart exactly-once, after Quix Streams' TestAppExactlyOnce and Kafka's own system
tests: kill the processing process after it produced and before it committed, restart it, and
every input yields exactly one committed output."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from katagate.eventlog.clients import new_admin, new_consumer
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.topics import TopicNames, TopicSpec, ensure_topics
from tests.integration.kafka_read import read_all

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def _setup(settings, count: int) -> dict[str, str]:
    prefix = settings.topic_prefix
    topics = {"EOS_IN": f"{prefix}.eos-in", "EOS_OUT": f"{prefix}.eos-out"}
    ensure_topics(new_admin(settings), settings,
                  [TopicSpec(name, 3) for name in topics.values()])
    producer = TransactionalProducer(settings, f"{prefix}-feeder")
    producer.begin()
    producer.produce(
        Outgoing(topics["EOS_IN"], str(i).encode(), f"key-{i % 17}".encode()) for i in range(count)
    )
    producer.commit()
    return {
        **topics,
        "EOS_BOOTSTRAP": settings.bootstrap_servers,
        "EOS_PREFIX": prefix,
        "EOS_DLQ": TopicNames(prefix).deadletter,
        "EOS_GROUP": f"{prefix}-eos",
        "EOS_TXN_ID": f"{prefix}-eos-worker",
    }


def _worker(env: dict[str, str], **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.eos_worker"],
        cwd=ROOT, env={**os.environ, **env, **extra},
    )


def _assert_exactly_once(settings, env: dict[str, str], count: int) -> list[bytes]:
    out = read_all(settings, env["EOS_OUT"])
    produced = Counter(r.value for r in out)
    expected = Counter(f"out:{i}".encode() for i in range(count))
    missing = expected - produced
    duplicated = {value: n for value, n in produced.items() if n > 1}
    assert not missing, f"{len(missing)} inputs have no committed output"
    assert not duplicated, f"outputs committed more than once: {list(duplicated)[:10]}"
    assert produced == expected
    # The group's committed offsets stand just past the last input record of each partition
    # (the high watermark lies one further: the feeder's commit marker takes an offset too).
    ends: dict[int, int] = {}
    for record in read_all(settings, env["EOS_IN"]):
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    consumer = new_consumer(settings, {"group.id": env["EOS_GROUP"]})
    try:
        partitions = [TopicPartition(env["EOS_IN"], p) for p in range(3)]
        committed = consumer.committed(partitions, timeout=10)
        assert {tp.partition: tp.offset for tp in committed} == ends
    finally:
        consumer.close()
    return [r.value for r in read_all(settings, env["EOS_OUT"],
                                      committed_only=False)]


def test_crash_after_produce_before_commit_then_restart_gives_exactly_once(kafka_settings):
    count = 300
    env = _setup(kafka_settings, count)

    crashed = _worker(env, CRASH_AT_BATCH="2", BATCH_SIZE="40")
    assert crashed.wait(timeout=120) == 17, "the worker should have crashed before its commit"
    restarted = _worker(env, BATCH_SIZE="40")
    assert restarted.wait(timeout=180) == 0

    everything = _assert_exactly_once(kafka_settings, env, count)
    # The crashed batch's outputs did reach the log (then were aborted): the crash really was
    # between produce and commit, and read_committed readers never saw them.
    assert len(everything) > count


def test_hard_kills_at_random_moments_lose_nothing_and_duplicate_nothing(kafka_settings):
    # 10 ms a record: 10 s of work, more than three runs killed within 4 s of their start can do.
    count = 1000
    env = _setup(kafka_settings, count)
    rng = random.Random(20261129)  # seeded: a failure replays the same kill times
    for _ in range(3):
        worker = _worker(env, BATCH_SIZE="20", SLEEP_S="0.01")
        time.sleep(rng.uniform(1.5, 4.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    done_before_final = len(read_all(kafka_settings, env["EOS_OUT"]))
    assert 0 < done_before_final < count, "the kills should land in the middle of the work"
    final = _worker(env, BATCH_SIZE="50")
    assert final.wait(timeout=180) == 0

    _assert_exactly_once(kafka_settings, env, count)
