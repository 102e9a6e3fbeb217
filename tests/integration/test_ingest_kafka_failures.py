"""Kafka slow or down: the sender gets 451 4.3.0, never 250, and what got 451 has no
MessageReceived in the log; when Kafka is back, mail flows again without a restart."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import smtplib
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from katagate.eventlog.broker import LocalBroker, free_port
from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames, ensure_topics
from katagate.ingest.received import Accepted
from katagate.ingest.run import durable_producer
from katagate.ingest.settings import IngestSettings
from katagate.ingest.write_state import Outcome
from katagate.ingest.writer import DurableWriter
from katagate.ingest.writer_pool import WriterPool
from katagate.schemas import ProducerRef
from tests.integration.kafka_read import read_all
from tests.integration.test_ingest_harness import Ingest, raw_records, received

pytestmark = pytest.mark.kafka


def send(address: tuple[str, int], subject: str) -> tuple[int, str]:
    with smtplib.SMTP(*address, timeout=60) as client:
        client.ehlo("client.test")
        client.mail("alice@example.org")
        client.rcpt("bob@example.net")
        code, reply = client.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        return code, reply.decode()


@pytest.fixture
def own_broker(tmp_path) -> Iterator[LocalBroker]:
    """A broker of this test's own, to pause and stop."""
    broker = LocalBroker(tmp_path / "broker")
    broker.start(port=free_port())
    try:
        yield broker
    finally:
        pid = broker.status().pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        broker.stop()
        shutil.rmtree(tmp_path / "broker", ignore_errors=True)


def test_kafka_paused_or_down_gives_451_never_250(own_broker):
    status = own_broker.status()
    assert status.bootstrap_servers
    assert status.pid
    assert status.port
    kafka = KafkaSettings(bootstrap_servers=status.bootstrap_servers,
                          topic_prefix=f"t{uuid.uuid4().hex[:12]}", mail_partitions=3,
                          transaction_timeout_ms=10_000, request_timeout_s=5.0)
    accepted: list[str] = []
    with Ingest(kafka, commit_timeout_s=2.0) as ingest:
        code, reply = send(ingest.address, "before")
        assert code == 250, reply
        accepted.append("before")

        os.kill(status.pid, signal.SIGSTOP)  # a broker that stops answering: a slow commit
        try:
            started = time.monotonic()
            code, reply = send(ingest.address, "paused")
            elapsed = time.monotonic() - started
        finally:
            os.kill(status.pid, signal.SIGCONT)
        assert (code, reply) == (451, "4.3.0 Temporary failure, try again later")
        assert elapsed < 4.0

        deadline = time.monotonic() + 60
        attempt = 0
        while time.monotonic() < deadline:  # recovers by itself, no restart
            attempt += 1
            code, reply = send(ingest.address, f"after-{attempt}")
            assert code in (250, 451), reply
            if code == 250:
                accepted.append(f"after-{attempt}")
                break
            time.sleep(0.5)
        assert accepted[-1].startswith("after-")

        own_broker.stop()
        for n in range(3):
            code, reply = send(ingest.address, f"down-{n}")
            assert (code, reply) == (451, "4.3.0 Temporary failure, try again later")

        own_broker.start(port=status.port)  # to read the log back
        stored = sorted(e.subject or "" for e in received(kafka))
    assert stored == sorted(accepted)


def test_a_bound_too_small_for_any_write_gives_451_and_no_message_received(kafka_settings):
    with Ingest(kafka_settings, commit_timeout_s=0.001) as ingest:
        code, reply = send(ingest.address, "too slow")
    assert (code, reply) == (451, "4.3.0 Temporary failure, try again later")
    names = TopicNames(kafka_settings.topic_prefix)
    assert read_all(kafka_settings, names.mail, committed_only=False) == []
    assert raw_records(kafka_settings) <= 1  # chunks written in time, named by nothing


def accepted_message(subject: str) -> Accepted:
    from katagate.ingest.ids import message_id

    return Accepted(
        message_id=message_id(int(time.time() * 1000), os.urandom(10)), event_id=uuid.uuid4(),
        occurred_at=dt.datetime.now(dt.UTC), envelope_from="a@example.org",
        envelope_to=("b@example.net",), client_ip="127.0.0.1", helo="client.test", tls=False,
        subject=subject, rule_id=None, settings_version=0,
        data=f"Subject: {subject}\r\n\r\nx\r\n".encode(),
    )


def durable_writer(kafka: KafkaSettings, name: str,
                   before_received: Callable[[], None] | None = None) -> DurableWriter:
    return DurableWriter(
        lambda: durable_producer(kafka, IngestSettings(commit_timeout_s=5.0), name),
        TopicNames(kafka.topic_prefix), ProducerRef(stage="ingest", instance="test"),
        before_received=before_received)


def test_chunks_acknowledged_after_the_bound_get_no_message_received(kafka_settings):
    ensure_topics(new_admin(kafka_settings), kafka_settings)
    slow = {"on": True}
    writer = durable_writer(kafka_settings, f"test-ingest-{uuid.uuid4().hex[:8]}",
                            lambda: time.sleep(1.0) if slow["on"] else None)
    writer.start()
    try:
        assert writer.ready.wait(30)
        assert writer.submit(accepted_message("slow"), 0.5).result(10) is Outcome.TIMEOUT
        slow["on"] = False
        assert writer.submit(accepted_message("fast"), 5.0).result(10) is Outcome.DURABLE
    finally:
        writer.stop()
    names = TopicNames(kafka_settings.topic_prefix)
    # Nothing names the slow one's chunks: not even an uncommitted MessageReceived.
    everything = read_all(kafka_settings, names.mail, committed_only=False)
    assert [e.subject for e in received(kafka_settings)] == ["fast"]
    assert len(everything) == 1
    # Its chunks are in the log, read by no one; the topic's retention removes them.
    assert raw_records(kafka_settings) == 2


def test_a_pool_of_writers_writes_each_message_once_and_shares_the_load(kafka_settings):
    ensure_topics(new_admin(kafka_settings), kafka_settings)
    # Each message's second write waits 50 ms: a message arriving meanwhile goes to the other.
    writers = [durable_writer(kafka_settings, f"test-pool-{i}-{uuid.uuid4().hex[:6]}",
                              lambda: time.sleep(0.05)) for i in range(2)]
    pool = WriterPool(writers)
    pool.start()
    try:
        assert pool.ready.wait(30)
        futures = []
        for n in range(60):
            futures.append(pool.submit(accepted_message(f"m{n}"), 10.0))
            time.sleep(0.005)
        assert [f.result(20) for f in futures] == [Outcome.DURABLE] * 60
    finally:
        pool.stop()
    assert all(w.written > 0 for w in writers)
    assert pool.written == 60
    assert sorted(e.subject for e in received(kafka_settings)) == sorted(
        f"m{n}" for n in range(60))
