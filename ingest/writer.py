"""Durable writes without a transaction: SMTP sessions hand the writer accepted messages and
wait until the broker has acknowledged them from every in-sync replica.

Each message is two writes of an idempotent producer (`acks=all`): its raw chunks
(katagate.mail.raw), and, once their offsets are known, its MessageReceived (katagate.mail),
which points at them. The `250` waits for both acknowledgements, so it still goes out only when
the message is durable; a reader never meets a MessageReceived whose chunks are missing.
docs/decisions/0007 says why this replaced the group-commit transaction (three broker round
trips and the transaction's own requests, records and markers per batch).

What a failure leaves:
- The raw write fails or is late: no MessageReceived is written, the sender gets `451`. The
  chunks, if any reached the log, are read by no one and leave with the topic's retention.
- The MessageReceived write fails: `451`. A copy of a split message may then be written
  without the others; the sender's retry makes those copies arrive twice, never none.
- An acknowledgement that comes after the session gave up (`451` sent): the message is in the
  log and will be delivered, and the sender's retry is a second message. The same window as a
  lost `250` (RFC 1047); it is logged and counted (`katagate_ingest_written_after_refusal_total`).

Two threads per writer: one takes messages from the sessions and acknowledged raw writes from
the callbacks and produces; one polls the producer, which runs the callbacks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from confluent_kafka import KafkaError, Producer

from katagate.eventlog import mail_log
from katagate.eventlog.errors import KatagateError
from katagate.eventlog.health import Health, Part
from katagate.eventlog.metrics import EVENTS_WRITTEN
from katagate.eventlog.raw import CHUNK_BYTES, Chunked, chunk
from katagate.eventlog.records import Outgoing
from katagate.eventlog.topics import TopicNames
from katagate.ingest import metrics
from katagate.ingest.received import Accepted, received_events
from katagate.schemas import MessageReceived, ProducerRef, RawLocation

log = logging.getLogger(__name__)


class Outcome(Enum):
    DURABLE = "durable"  # both writes acknowledged by every in-sync replica
    UNAVAILABLE = "kafka_unavailable"  # Kafka refused or did not answer
    TIMEOUT = "commit_timeout"  # not durable within the bound


@dataclass(frozen=True)
class Batching:
    # One turn of the writer takes at most this many messages, or bytes, from the sessions;
    # MessageReceived writes of messages whose chunks are durable go between turns.
    max_messages: int = 64
    max_bytes: int = 32 * 1024 * 1024


@dataclass
class _Pending:
    accepted: Accepted
    deadline: float  # time.monotonic(): no write of this message begins after it
    gives_up: float  # when the session stops waiting and answers 451
    submitted: float
    future: concurrent.futures.Future[Outcome]


@dataclass
class _InFlight:
    """A message between its first write and its outcome; the callbacks fill it in."""

    pending: _Pending
    chunked: Chunked
    located: list[tuple[int, int] | None]
    producer: Producer
    raw_left: int
    events: list[MessageReceived] = field(default_factory=list)
    events_left: int = 0
    error: KafkaError | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # callbacks vs the writer

    def settle(self, error: KafkaError | None, count: int = 1) -> bool:
        """`count` writes of the current step ended (with `error`, if any): True when it was
        the step's last."""
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            if self.raw_left:
                self.raw_left -= count
                return self.raw_left == 0
            self.events_left -= count
            return self.events_left == 0


ProducerFactory = Callable[[], Producer]


class DurableWriter:
    def __init__(
        self,
        producer_factory: ProducerFactory,
        topics: TopicNames,
        producer_ref: ProducerRef,
        batching: Batching | None = None,
        before_received: Callable[[], None] | None = None,  # a test seam: a late raw ack
        part: Part | None = None,
        blocking_s: float = 0.0,
    ) -> None:
        """`part`: this writer in the process's health; it beats at each turn, a turn
        blocking at most `blocking_s` (a producer's start)."""
        self._part = part or Health().part("ingest-writer")
        self._blocking_s = blocking_s
        self._factory = producer_factory
        self._topics = topics
        self._ref = producer_ref
        self._batching = batching or Batching()
        self._before_received = before_received
        self._queue: queue.Queue[_Pending | _InFlight] = queue.Queue()
        self._producer: Producer | None = None
        self._replace = threading.Event()  # a callback saw a fatal error
        self._in_flight = 0
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._poller = threading.Thread(target=self._poll, name="ingest-writer-poll",
                                        daemon=True)
        self.ready = threading.Event()  # a producer reached the broker
        self.written = 0  # messages made durable, for tests and benchmarks

    def start(self) -> None:
        self._thread.start()
        self._poller.start()

    @property
    def waiting(self) -> int:
        """Messages handed over and not yet durable or refused."""
        return self._in_flight

    def stop(self, timeout_s: float = 30.0) -> None:
        """Refuse new messages, finish those already written in part, then close."""
        self._stopping.set()
        self._thread.join(timeout_s)
        self._closed.set()
        self._poller.join(timeout_s)

    def submit(self, accepted: Accepted, bound_s: float) -> concurrent.futures.Future[Outcome]:
        now = time.monotonic()
        # The writer's deadline falls a little before the session's, so that the writer, not
        # the session's timer, decides the outcome whenever the writer is responsive.
        margin = min(0.2, bound_s / 10)
        pending = _Pending(accepted, now + bound_s - margin, now + bound_s, now,
                           concurrent.futures.Future())
        if self._stopping.is_set():
            pending.future.set_result(Outcome.UNAVAILABLE)
        else:
            self._count(+1)
            self._queue.put(pending)
        return pending.future

    # -- the writing thread ---------------------------------------------------------------

    def _run(self) -> None:
        with contextlib.suppress(KatagateError):
            self._ensure_producer()
        while not self._stopping.is_set():
            self._part.beat(blocking_s=self._blocking_s)
            self._turn(block=True)
        # Stopping: what is written in part gets its MessageReceived; what is new gets 451.
        end = time.monotonic() + 10.0
        while self._in_flight and time.monotonic() < end:
            self._turn(block=False, new=False)
            time.sleep(0.01)
        producer = self._producer
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.flush(max(0.0, end - time.monotonic()))

    def _turn(self, block: bool, new: bool = True) -> None:
        if self._replace.is_set():
            self._new_producer()
        taken = size = 0
        try:
            item = self._queue.get(timeout=0.1) if block else self._queue.get_nowait()
        except queue.Empty:
            return
        while True:
            if isinstance(item, _InFlight):
                self._write_received(item)
            elif new:
                taken += 1
                size += len(item.accepted.data)
                self._write_raw(item)
            else:
                self._finish(item, Outcome.UNAVAILABLE, "unavailable")
            if taken >= self._batching.max_messages or size >= self._batching.max_bytes:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        if taken:
            metrics.BATCH_MESSAGES.observe(taken)

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            try:
                self._producer = self._factory()
            except KatagateError as exc:
                self._part.not_ready("kafka_unavailable", type(exc).__name__)
                raise
            self.ready.set()
            self._part.ready("ready", "the producer reached the broker")
        return self._producer

    def _new_producer(self) -> None:
        """After a fatal error the producer cannot write again: its messages in flight get
        their outcome from its callbacks (or 451 from the session's bound), the next from a
        new one."""
        self._replace.clear()
        old, self._producer = self._producer, None
        if old is not None:
            with contextlib.suppress(Exception):
                old.purge()
                old.poll(0)
        log.warning("the producer hit a fatal error; the next messages use a new one")

    def _write_raw(self, pending: _Pending) -> None:
        if not pending.future.set_running_or_notify_cancel():
            self._count(-1)  # the session gave up before its message was taken
            return
        if time.monotonic() >= pending.deadline:
            self._finish(pending, Outcome.TIMEOUT, "late")
            return
        try:
            producer = self._ensure_producer()
        except KatagateError as exc:
            log.warning("Kafka unavailable, a message refused with 451: %s", exc)
            self._finish(pending, Outcome.UNAVAILABLE, "unavailable")
            return
        accepted = pending.accepted
        chunked = chunk(self._topics.raw, accepted.message_id, accepted.data,
                        head=accepted.trace)
        flight = _InFlight(pending, chunked, [None] * len(chunked.records), producer,
                           raw_left=len(chunked.records))
        count = len(chunked.records)
        for index, record in enumerate(chunked.records):
            error = self._produce(producer, record, self._raw_callback(flight, index))
            del record  # the chunk's slice: librdkafka holds its own copy
            if error is not None:  # the chunks not produced end here, with the error
                if flight.settle(error, count - index):
                    self._queue.put(flight)
                return

    def _write_received(self, flight: _InFlight) -> None:
        pending = flight.pending
        if self._before_received is not None:
            self._before_received()
        if flight.error is not None:
            self._finish(pending, Outcome.UNAVAILABLE, "failed", flight.error)
            return
        if time.monotonic() >= pending.deadline:  # too late to write it: nothing refers
            self._finish(pending, Outcome.TIMEOUT, "late")  # to the chunks, the log drops them
            return
        places = [place for place in flight.located if place is not None]
        if len(places) != len(flight.located) or len({p for p, _ in places}) != 1:
            self._finish(pending, Outcome.UNAVAILABLE, "failed")
            log.error("message %s: its chunks are not all in one partition",
                      pending.accepted.message_id)
            return
        location = RawLocation(topic=self._topics.raw, partition=places[0][0],
                               offsets=[offset for _, offset in places], chunk_bytes=CHUNK_BYTES)
        flight.events = received_events(pending.accepted, self._ref, flight.chunked.sha256,
                                        flight.chunked.size, location)
        flight.events_left = len(flight.events)
        callback = self._received_callback(flight)
        for index, event in enumerate(flight.events):
            error = self._produce(flight.producer, Outgoing.event(self._topics.mail, event),
                                  callback)
            if error is not None:
                if flight.settle(error, len(flight.events) - index):
                    self._received(flight)
                return

    @staticmethod
    def _produce(producer: Producer, record: Outgoing, callback: Any) -> KafkaError | None:
        while True:
            try:
                producer.produce(record.topic, value=record.value, key=record.key,
                                 headers=list(record.headers), on_delivery=callback)
                return None
            except BufferError:  # the local queue is full: the poller makes room
                time.sleep(0.01)
            except Exception as exc:  # a producer that failed fatally, a record too large
                log.warning("a write was refused: %s", exc)
                return _error_of(exc)

    # -- the callbacks, on the polling thread -------------------------------------------

    def _poll(self) -> None:
        while not self._closed.is_set():
            producer = self._producer
            if producer is None:
                time.sleep(0.05)
                continue
            try:
                producer.poll(0.1)
            except Exception as exc:  # confluent-kafka raises a fatal error from poll()
                log.error("polling the producer: %s", exc)
                self._note(_error_of(exc))

    def _raw_callback(self, flight: _InFlight, index: int) -> Callable[[Any, Any], None]:
        def done(error: KafkaError | None, message: Any) -> None:
            if error is None and message is not None:
                flight.located[index] = (message.partition(), message.offset())
            else:
                self._note(error)
            if flight.settle(error if message is not None else error or _UNKNOWN):
                self._queue.put(flight)  # the chunks are durable: on to MessageReceived
        return done

    def _received_callback(self, flight: _InFlight) -> Callable[[Any, Any], None]:
        def done(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                self._note(error)
            if flight.settle(error if message is not None else error or _UNKNOWN):
                self._received(flight)
        return done

    def _received(self, flight: _InFlight) -> None:
        pending = flight.pending
        if flight.error is not None:
            self._finish(pending, Outcome.UNAVAILABLE, "failed", flight.error)
            return
        EVENTS_WRITTEN.labels("raw").inc(len(flight.located))
        EVENTS_WRITTEN.labels("mail").inc(len(flight.events))
        if time.monotonic() >= pending.gives_up:
            metrics.WRITTEN_AFTER_REFUSAL.inc()
            log.warning("message %s became durable after its session gave up (451): it "
                        "will be delivered, and the sender's retry is a second copy",
                        pending.accepted.message_id)
        mail_log.write(flight.events)
        self.written += 1
        self._finish(pending, Outcome.DURABLE, "durable")

    def _note(self, error: KafkaError | None) -> None:
        if error is not None and error.fatal():
            self._replace.set()

    def _finish(self, pending: _Pending, outcome: Outcome, label: str,
                error: KafkaError | None = None) -> None:
        self._count(-1)
        metrics.WRITES.labels(label).inc()
        metrics.COMMIT_SECONDS.observe(time.monotonic() - pending.submitted)
        if outcome is Outcome.DURABLE:
            self._part.ready("ready", "the last message was written")
        else:  # until a message is written again (messages get 451 meanwhile)
            self._part.not_ready("not_writing", f"the last message: {label}")
            if error is not None:
                log.warning("message %s refused with 451: %s", pending.accepted.message_id,
                            error)
        if not pending.future.done():
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                pending.future.set_result(outcome)

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._in_flight += delta


_UNKNOWN = KafkaError(KafkaError._FAIL, "acknowledged without an offset")


def _error_of(exc: Exception) -> KafkaError:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else KafkaError(KafkaError._FAIL, str(exc))


class Writer(Protocol):
    """What an SMTP session hands its accepted message to."""

    def submit(self, accepted: Accepted, bound_s: float) -> concurrent.futures.Future[Outcome]:
        ...


class WriterPool:
    """Several writers, each its own producer and threads. A message goes to the one with the
    fewest waiting."""

    def __init__(self, writers: list[DurableWriter]) -> None:
        if not writers:
            raise ValueError("a pool needs at least one writer")
        self._writers = writers
        self.ready = threading.Event()  # every writer has its producer

    def start(self) -> None:
        for writer in self._writers:
            writer.start()
        threading.Thread(target=self._watch_ready, name="ingest-writers-ready",
                         daemon=True).start()

    def _watch_ready(self) -> None:
        for writer in self._writers:
            writer.ready.wait()
        self.ready.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        for writer in self._writers:
            writer.stop(timeout_s)

    def submit(self, accepted: Accepted, bound_s: float) -> concurrent.futures.Future[Outcome]:
        writer = min(self._writers, key=lambda w: w.waiting)
        return writer.submit(accepted, bound_s)

    @property
    def written(self) -> int:
        return sum(w.written for w in self._writers)
