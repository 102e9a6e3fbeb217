"""The durable writer's failure paths, which a real broker does not produce on demand: a
chunk refused, produce() raising, a copy refused, late acknowledgements, fatal errors, a
factory that cannot reach Kafka, stop(), and the pool's choice of writer.

`FakeProducer` stands in for confluent_kafka.Producer at the edge: produce() records, the test
decides each record's delivery report, and the reports run only from poll() or flush(), as
librdkafka's do. A fatal error is modelled as confluent-kafka reports it: poll() raises a
KafkaException whose error is fatal, the delivery reports of the messages it fails carry
non-fatal errors, and produce() then raises _FATAL.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from katagate.eventlog.errors import KafkaUnavailable
from katagate.eventlog.raw import CHUNK_BYTES
from katagate.eventlog.topics import TopicNames
from katagate.ingest.received import Accepted, Copy
from katagate.ingest.write_state import Outcome
from katagate.ingest.writer import DurableWriter
from katagate.ingest.writer_pool import WriterPool
from katagate.schemas import MessageReceived, ProducerRef, decode_event

TOPICS = TopicNames("t")
WAIT_S = 5.0  # every wait is bounded by this


@dataclass
class Sent:
    topic: str
    value: bytes
    key: bytes | None
    on_delivery: Callable[[Any, Any], None]
    reported: bool = False


class FakeMessage:
    """What a delivery report carries (confluent_kafka.Message, the accessors used)."""

    def __init__(self, sent: Sent, partition: int, offset: int | None) -> None:
        self._sent, self._partition, self._offset = sent, partition, offset

    def topic(self) -> str:
        return self._sent.topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int | None:  # None, as confluent-kafka gives an unknown offset
        return self._offset

    def value(self) -> bytes:
        return self._sent.value


class FakeProducer:
    """confluent_kafka.Producer as the writer uses it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.sent: list[Sent] = []
        self.refusals: list[BaseException | None] = []  # per produce() call: raise, or None
        self.produce_calls = 0
        self.purged = False
        self.fatal = False
        # Delivery reports decided by the test, run by the next poll(); an exception in the
        # list is raised by the poll() that reaches it (a fatal error), the rest stay queued.
        self._reports: list[tuple[Sent, KafkaError | None, FakeMessage] | Exception] = []
        self._offsets: dict[int, int] = {}

    # -- what the writer calls

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                headers: Any = None, on_delivery: Any = None) -> None:
        with self._cond:
            self.produce_calls += 1
            if self.refusals:
                refusal = self.refusals.pop(0)
                if refusal is not None:
                    raise refusal
            if self.fatal:
                raise KafkaException(KafkaError(KafkaError._FATAL, "Unable to produce"))
            self.sent.append(Sent(topic, value or b"", key, on_delivery))
            self._cond.notify_all()

    def poll(self, timeout: float | None = None) -> int:
        with self._cond:
            if not self._reports and timeout:
                self._cond.wait(timeout)
            taken: list[tuple[Sent, KafkaError | None, FakeMessage]] = []
            raising: Exception | None = None
            while self._reports:
                report = self._reports.pop(0)
                if isinstance(report, Exception):
                    raising = report
                    break
                taken.append(report)
        for sent, error, message in taken:  # outside the lock, as librdkafka's callbacks
            sent.on_delivery(error, message)
        if raising is not None:
            raise raising
        return len(taken)

    def flush(self, timeout: float | None = None) -> int:
        end = time.monotonic() + (timeout or 0.0)
        while True:
            self.poll(0.01)
            with self._cond:
                left = sum(not s.reported for s in self.sent) + len(self._reports)
            if not left or time.monotonic() >= end:
                return left

    def purge(self, in_queue: bool = True, in_flight: bool = True,
              blocking: bool = True) -> None:
        with self._cond:
            self.purged = True
            for sent in self.sent:
                if not sent.reported:
                    self._report(sent, KafkaError(KafkaError._PURGE_INFLIGHT), 0, -1)

    # -- what the test calls

    def wait_sent(self, count: int, topic: str | None = None) -> list[Sent]:
        """The first `count` records produced (to `topic`), once there are that many."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._of(topic)) >= count, WAIT_S)
            assert ok, f"{[s.key for s in self.sent]} produced, waited for {count}"
            return self._of(topic)[:count]

    def records(self, topic: str) -> list[Sent]:
        with self._cond:
            return self._of(topic)

    def ack(self, *sents: Sent, partition: int = 0) -> None:
        with self._cond:
            for sent in sents:
                offset = self._offsets.get(partition, 100)
                self._offsets[partition] = offset + 1
                self._report(sent, None, partition, offset)

    def ack_without_offset(self, sent: Sent) -> None:
        """Acknowledged as the duplicate of a retried request: the broker knows no offset."""
        with self._cond:
            self._report(sent, None, 0, None)

    def fail(self, sent: Sent, error: KafkaError) -> None:
        with self._cond:
            self._report(sent, error, 0, -1)

    def fail_fatally(self, reason: str = "fenced") -> None:
        """librdkafka's fatal error: poll() raises it, then the unreported messages are
        purged with non-fatal errors, and produce() refuses."""
        with self._cond:
            self.fatal = True
            self._reports.append(KafkaException(
                KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, reason, fatal=True)))
            for sent in self.sent:
                if not sent.reported:
                    self._report(sent, KafkaError(KafkaError._PURGE_QUEUE), 0, -1)

    def _report(self, sent: Sent, error: KafkaError | None, partition: int,
                offset: int | None) -> None:
        assert not sent.reported, "a record gets one delivery report"
        sent.reported = True
        self._reports.append((sent, error, FakeMessage(sent, partition, offset)))
        self._cond.notify_all()

    def _of(self, topic: str | None) -> list[Sent]:
        return [s for s in self.sent if topic is None or s.topic == topic]


class Factory:
    """Hands out a new FakeProducer per call, or raises KafkaUnavailable while `down`."""

    def __init__(self) -> None:
        self.made: list[FakeProducer] = []
        self.down = False
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.down:
            raise KafkaUnavailable("the broker did not answer")
        producer = FakeProducer()
        self.made.append(producer)
        return producer

    @property
    def last(self) -> FakeProducer:
        assert self.made, "no producer made yet"
        return self.made[-1]


def accepted(message_id: str = "Msg00000001", size: int = 100,
             copies: int = 0) -> Accepted:
    ids = [message_id, *(f"{message_id}S{i}" for i in range(1, copies))]
    return Accepted(
        message_id=message_id, event_id=uuid.uuid4(),
        occurred_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        envelope_from="a@example.org",
        envelope_to=tuple(f"r{i}@example.net" for i in range(max(1, copies))),
        client_ip="192.0.2.1", helo="client.test", tls=False, subject="s", rule_id=None,
        settings_version=0, data=b"x" * size,
        copies=tuple(Copy(i, uuid.uuid4(), f"rule{n}", (f"r{n}@example.net",))
                     for n, i in enumerate(ids)) if copies else (),
    )


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def writes(outcome: str) -> float:
    return sample("katagate_ingest_writes_total", {"outcome": outcome})


def received(sent: Sent) -> MessageReceived:
    event = decode_event(sent.value)
    assert isinstance(event, MessageReceived)
    return event


def wait_until(condition: Callable[[], bool]) -> None:
    end = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < end, "the condition did not hold in time"
        time.sleep(0.005)


@pytest.fixture
def factory() -> Factory:
    return Factory()


@pytest.fixture
def writer(factory: Factory) -> Iterator[DurableWriter]:
    writer = DurableWriter(factory, TOPICS, ProducerRef(stage="ingest", instance="test"))
    writer.start()
    try:
        yield writer
    finally:
        writer.stop(timeout_s=2.0)


def test_each_copys_message_received_is_written_only_after_every_chunk_is_acknowledged(
        writer: DurableWriter, factory: Factory) -> None:
    durable_before = writes("durable")
    message = accepted(size=2 * CHUNK_BYTES + 10, copies=2)  # three chunks, two copies
    future = writer.submit(message, 10.0)
    producer = factory.last
    chunks = producer.wait_sent(3, TOPICS.raw)
    assert writer.waiting == 1
    producer.ack(chunks[0], chunks[1], partition=2)
    time.sleep(0.2)  # the writer had time to write too early
    assert producer.records(TOPICS.mail) == []
    producer.ack(chunks[2], partition=2)
    events = producer.wait_sent(2, TOPICS.mail)
    for event, copy in zip(events, message.copies, strict=True):
        assert received(event).message_id == copy.message_id
        assert received(event).raw.partition == 2
        assert received(event).raw.offsets == [100, 101, 102]
    assert not future.done()  # the chunks alone are not the 250
    producer.ack(*events)
    assert future.result(WAIT_S) is Outcome.DURABLE
    assert len(producer.records(TOPICS.mail)) == 2
    assert writer.written == 1
    assert writes("durable") == durable_before + 1
    wait_until(lambda: writer.waiting == 0)


def test_a_chunk_refused_gives_unavailable_and_no_message_received(
        writer: DurableWriter, factory: Factory) -> None:
    failed_before = writes("failed")
    future = writer.submit(accepted(size=2 * CHUNK_BYTES + 10), 10.0)
    producer = factory.last
    chunks = producer.wait_sent(3, TOPICS.raw)
    producer.ack(chunks[0])
    producer.fail(chunks[1], KafkaError(KafkaError._MSG_TIMED_OUT))
    producer.ack(chunks[2])
    assert future.result(WAIT_S) is Outcome.UNAVAILABLE
    time.sleep(0.1)
    assert producer.records(TOPICS.mail) == []
    assert writer.written == 0
    assert writes("failed") == failed_before + 1
    wait_until(lambda: writer.waiting == 0)


def test_a_chunk_acknowledged_without_an_offset_gives_unavailable_and_no_message_received(
        writer: DurableWriter, factory: Factory, caplog: pytest.LogCaptureFixture) -> None:
    failed_before = writes("failed")
    with caplog.at_level(logging.ERROR, logger="katagate.ingest.writer"):
        future = writer.submit(accepted(size=CHUNK_BYTES + 10), 10.0)
        producer = factory.last
        chunks = producer.wait_sent(2, TOPICS.raw)
        producer.ack(chunks[0])
        producer.ack_without_offset(chunks[1])  # nothing could point at it
        assert future.result(WAIT_S) is Outcome.UNAVAILABLE
    assert "writing a message failed" not in caplog.text  # a failed write, not a bug
    time.sleep(0.1)
    assert producer.records(TOPICS.mail) == []
    assert writes("failed") == failed_before + 1
    wait_until(lambda: writer.waiting == 0)


def test_produce_raising_buffer_error_is_retried_until_the_queue_has_room(
        writer: DurableWriter, factory: Factory) -> None:
    wait_until(lambda: bool(factory.made))
    producer = factory.last
    producer.refusals = [BufferError("queue full"), BufferError("queue full")]
    future = writer.submit(accepted(), 10.0)
    chunk = producer.wait_sent(1, TOPICS.raw)[0]
    assert producer.produce_calls == 3
    producer.ack(chunk)
    producer.ack(*producer.wait_sent(1, TOPICS.mail))
    assert future.result(WAIT_S) is Outcome.DURABLE


def test_a_queue_still_full_at_the_writers_deadline_gives_unavailable_and_frees_the_writer(
        writer: DurableWriter, factory: Factory) -> None:
    wait_until(lambda: bool(factory.made))
    producer = factory.last
    producer.refusals = [BufferError("queue full")] * 10_000
    future = writer.submit(accepted("Msg0000000A"), 0.3)
    assert future.result(WAIT_S) is Outcome.UNAVAILABLE
    assert producer.sent == []
    wait_until(lambda: writer.waiting == 0)
    producer.refusals = []  # room again: the next message goes through
    future = writer.submit(accepted("Msg0000000B"), 10.0)
    producer.ack(producer.wait_sent(1, TOPICS.raw)[0])
    producer.ack(*producer.wait_sent(1, TOPICS.mail))
    assert future.result(WAIT_S) is Outcome.DURABLE


def test_a_bug_while_writing_one_message_costs_it_a_451_and_the_writer_goes_on(
        writer: DurableWriter, factory: Factory, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from katagate.ingest import writer as module

    real = module.received_events
    calls = {"n": 0}

    def first_fails(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("a bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "received_events", first_fails)
    wait_until(lambda: bool(factory.made))
    producer = factory.last
    with caplog.at_level(logging.ERROR, logger="katagate.ingest.writer"):
        future = writer.submit(accepted("Msg0000000C"), 10.0)
        producer.ack(producer.wait_sent(1, TOPICS.raw)[0])
        assert future.result(WAIT_S) is Outcome.UNAVAILABLE
    assert "writing a message failed" in caplog.text
    wait_until(lambda: writer.waiting == 0)
    future = writer.submit(accepted("Msg0000000D"), 10.0)
    producer.ack(producer.wait_sent(2, TOPICS.raw)[1])
    producer.ack(*producer.wait_sent(1, TOPICS.mail))
    assert future.result(WAIT_S) is Outcome.DURABLE
    assert received(producer.records(TOPICS.mail)[0]).message_id == "Msg0000000D"


def test_produce_raising_kafka_exception_on_the_first_chunk_ends_the_message_with_unavailable(
        writer: DurableWriter, factory: Factory) -> None:
    wait_until(lambda: bool(factory.made))
    producer = factory.last
    producer.refusals = [KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))]
    future = writer.submit(accepted(), 10.0)
    assert future.result(WAIT_S) is Outcome.UNAVAILABLE  # no report to wait for
    assert producer.sent == []
    wait_until(lambda: writer.waiting == 0)


def test_produce_raising_kafka_exception_after_a_chunk_ends_the_message_once_that_chunk_reports(
        writer: DurableWriter, factory: Factory) -> None:
    wait_until(lambda: bool(factory.made))
    producer = factory.last
    producer.refusals = [None, KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))]
    future = writer.submit(accepted(size=2 * CHUNK_BYTES + 10), 10.0)
    first = producer.wait_sent(1, TOPICS.raw)[0]
    producer.ack(first)
    assert future.result(WAIT_S) is Outcome.UNAVAILABLE
    assert len(producer.records(TOPICS.raw)) == 1  # the third chunk was never produced
    assert producer.records(TOPICS.mail) == []
    wait_until(lambda: writer.waiting == 0)


def test_produce_raising_kafka_exception_on_message_received_ends_the_message_with_unavailable(
        writer: DurableWriter, factory: Factory) -> None:
    wait_until(lambda: bool(factory.made))
    producer = factory.last
    producer.refusals = [None, KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))]
    future = writer.submit(accepted(), 10.0)
    producer.ack(producer.wait_sent(1, TOPICS.raw)[0])
    assert future.result(WAIT_S) is Outcome.UNAVAILABLE
    assert producer.records(TOPICS.mail) == []
    wait_until(lambda: writer.waiting == 0)


def test_a_split_message_whose_second_copy_is_refused_gives_unavailable_though_the_first_is_written(
        writer: DurableWriter, factory: Factory) -> None:
    message = accepted(copies=2)
    future = writer.submit(message, 10.0)
    producer = factory.last
    producer.ack(producer.wait_sent(1, TOPICS.raw)[0])
    first, second = producer.wait_sent(2, TOPICS.mail)
    producer.ack(first)
    producer.fail(second, KafkaError(KafkaError.NOT_ENOUGH_REPLICAS))
    assert future.result(WAIT_S) is Outcome.UNAVAILABLE
    # The first copy is in the log and will be delivered; the sender's retry makes it
    # arrive twice (the module's docstring), never the second copy not at all.
    assert received(first).message_id == message.message_id
    assert writer.written == 0
    wait_until(lambda: writer.waiting == 0)


def test_chunks_acknowledged_after_the_writers_deadline_give_timeout_and_no_message_received(
        writer: DurableWriter, factory: Factory) -> None:
    late_before = writes("late")
    future = writer.submit(accepted(), 0.5)  # the writer's deadline: 0.45 s
    producer = factory.last
    chunk = producer.wait_sent(1, TOPICS.raw)[0]
    time.sleep(0.5)
    producer.ack(chunk)
    assert future.result(WAIT_S) is Outcome.TIMEOUT
    time.sleep(0.1)
    assert producer.records(TOPICS.mail) == []
    assert writes("late") == late_before + 1
    wait_until(lambda: writer.waiting == 0)


def test_message_received_acknowledged_after_the_session_gave_up_is_counted_and_logged(
        writer: DurableWriter, factory: Factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="katagate.ingest.writer")
    before = sample("katagate_ingest_written_after_refusal_total")
    message = accepted("Late0000001")
    future = writer.submit(message, 0.5)
    producer = factory.last
    producer.ack(producer.wait_sent(1, TOPICS.raw)[0])
    event = producer.wait_sent(1, TOPICS.mail)[0]
    time.sleep(0.6)  # the session answered 451 meanwhile
    producer.ack(event)
    assert future.result(WAIT_S) is Outcome.DURABLE  # the session no longer listens
    assert sample("katagate_ingest_written_after_refusal_total") == before + 1
    assert any("Late0000001" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_a_fatal_error_in_a_delivery_report_gets_the_next_message_a_new_producer(
        writer: DurableWriter, factory: Factory) -> None:
    first = writer.submit(accepted("First000001"), 10.0)
    old = factory.last
    old.fail(old.wait_sent(1, TOPICS.raw)[0],
             KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "fenced", fatal=True))
    assert first.result(WAIT_S) is Outcome.UNAVAILABLE
    second = writer.submit(accepted("Second00001"), 10.0)
    wait_until(lambda: len(factory.made) == 2)
    new = factory.last
    new.ack(new.wait_sent(1, TOPICS.raw)[0])
    new.ack(new.wait_sent(1, TOPICS.mail)[0])
    assert second.result(WAIT_S) is Outcome.DURABLE
    assert old.purged
    assert len(old.sent) == 1


def test_a_fatal_error_raised_by_poll_ends_the_messages_in_flight_and_gets_a_new_producer(
        writer: DurableWriter, factory: Factory) -> None:
    # confluent-kafka raises a fatal error from poll(); the delivery reports it causes carry
    # non-fatal errors (_PURGE_QUEUE), and produce() on that producer raises _FATAL.
    first = writer.submit(accepted("First000001"), 10.0)
    old = factory.last
    old.wait_sent(1, TOPICS.raw)
    old.fail_fatally()
    assert first.result(WAIT_S) is Outcome.UNAVAILABLE
    second = writer.submit(accepted("Second00001"), 10.0)
    wait_until(lambda: len(factory.made) == 2)
    new = factory.last
    new.ack(new.wait_sent(1, TOPICS.raw)[0])
    new.ack(new.wait_sent(1, TOPICS.mail)[0])
    assert second.result(WAIT_S) is Outcome.DURABLE
    wait_until(lambda: writer.waiting == 0)


def test_a_factory_raising_kafka_unavailable_gives_unavailable_until_it_works_again(
        factory: Factory) -> None:
    factory.down = True
    writer = DurableWriter(factory, TOPICS, ProducerRef(stage="ingest", instance="test"))
    writer.start()
    try:
        assert writer.submit(accepted("Down0000001"), 10.0).result(WAIT_S) \
            is Outcome.UNAVAILABLE
        assert not writer.ready.is_set()
        factory.down = False
        future = writer.submit(accepted("Back0000001"), 10.0)
        wait_until(lambda: bool(factory.made))
        producer = factory.last
        producer.ack(producer.wait_sent(1, TOPICS.raw)[0])
        producer.ack(producer.wait_sent(1, TOPICS.mail)[0])
        assert future.result(WAIT_S) is Outcome.DURABLE
        assert writer.ready.is_set()
        assert writer.waiting == 0
    finally:
        writer.stop(timeout_s=2.0)


def test_stop_still_writes_the_message_received_of_a_message_whose_chunks_are_acknowledged(
        writer: DurableWriter, factory: Factory) -> None:
    future = writer.submit(accepted(), 10.0)
    producer = factory.last
    chunk = producer.wait_sent(1, TOPICS.raw)[0]
    stopping = threading.Thread(target=writer.stop, kwargs={"timeout_s": WAIT_S})
    stopping.start()
    # Once stopping, a new message is refused at once.
    wait_until(lambda: writer.submit(accepted("Probe000001"), 10.0).done())
    time.sleep(0.3)  # the writer's last turn (0.1 s at most) is over: it is finishing
    producer.ack(chunk)
    producer.ack(producer.wait_sent(1, TOPICS.mail)[0])
    assert future.result(WAIT_S) is Outcome.DURABLE
    stopping.join(WAIT_S)
    assert not stopping.is_alive()
    assert writer.written == 1


def test_a_message_submitted_after_stop_gets_unavailable_at_once(
        writer: DurableWriter, factory: Factory) -> None:
    writer.stop(timeout_s=WAIT_S)
    future = writer.submit(accepted(), 10.0)
    assert future.done()
    assert future.result(0) is Outcome.UNAVAILABLE
    assert writer.waiting == 0
    assert all(p.sent == [] for p in factory.made)


def test_the_pool_gives_a_message_to_the_writer_with_the_fewest_waiting() -> None:
    factories = [Factory(), Factory()]
    writers = [DurableWriter(f, TOPICS, ProducerRef(stage="ingest", instance=f"w{i}"))
               for i, f in enumerate(factories)]
    pool = WriterPool(writers)
    pool.start()
    try:
        assert pool.ready.wait(WAIT_S)
        a, b = (f.last for f in factories)
        writers[0].submit(accepted("Aaaa0000001"), 10.0)
        writers[0].submit(accepted("Aaaa0000002"), 10.0)
        pool.submit(accepted("Pool0000001"), 10.0)  # 2 waiting at the first, 0 at the second
        assert [s.key for s in b.wait_sent(1, TOPICS.raw)] == [b"Pool0000001"]
        writers[1].submit(accepted("Bbbb0000001"), 10.0)
        writers[1].submit(accepted("Bbbb0000002"), 10.0)
        pool.submit(accepted("Pool0000002"), 10.0)  # now 2 against 3
        assert [s.key for s in a.wait_sent(3, TOPICS.raw)][2] == b"Pool0000002"
        for producer in (a, b):  # let everything end before stopping
            producer.ack(*producer.wait_sent(3, TOPICS.raw))
            producer.ack(*producer.wait_sent(3, TOPICS.mail))
        wait_until(lambda: pool.written == 6)
    finally:
        pool.stop(timeout_s=2.0)
