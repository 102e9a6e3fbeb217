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
from typing import Any

from confluent_kafka import KafkaError, Producer

from katagate.eventlog import mail_log
from katagate.eventlog.errors import KatagateError
from katagate.eventlog.health import Health, Part
from katagate.eventlog.metrics import EVENTS_WRITTEN
from katagate.eventlog.raw import CHUNK_BYTES, chunk
from katagate.eventlog.records import Outgoing, acknowledged_at
from katagate.eventlog.topics import TopicNames
from katagate.ingest import metrics
from katagate.ingest.received import Accepted, received_events
from katagate.ingest.write_state import Batching, InFlight, Outcome, Pending
from katagate.schemas import ProducerRef, RawLocation

log = logging.getLogger(__name__)


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
        self._queue: queue.Queue[Pending | InFlight] = queue.Queue()
        self._producer: Producer | None = None
        self._replace = threading.Event()  # a callback saw a fatal error
        self._in_flight = 0
        self._count_lock = threading.Lock()
        self._submit_lock = threading.Lock()  # no message is queued after stop() drains
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
        with self._submit_lock:
            self._stopping.set()
        self._thread.join(timeout_s)
        self._closed.set()
        self._poller.join(timeout_s)

    def submit(self, accepted: Accepted, bound_s: float) -> concurrent.futures.Future[Outcome]:
        now = time.monotonic()
        # The writer's deadline falls a little before the session's, so that the writer, not
        # the session's timer, decides the outcome whenever the writer is responsive.
        margin = min(0.2, bound_s / 10)
        pending = Pending(accepted, now + bound_s - margin, now + bound_s, now,
                           concurrent.futures.Future())
        with self._submit_lock:
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
        with contextlib.suppress(queue.Empty):  # what is left, past the bound: 451
            while True:
                item = self._queue.get_nowait()
                self._finish(item.pending if isinstance(item, InFlight) else item,
                             Outcome.UNAVAILABLE, "unavailable")

    def _turn(self, block: bool, new: bool = True) -> None:
        if self._replace.is_set():
            self._new_producer()
        taken = size = 0
        try:
            item = self._queue.get(timeout=0.1) if block else self._queue.get_nowait()
        except queue.Empty:
            return
        while True:
            if isinstance(item, Pending) and new:
                taken += 1
                size += len(item.accepted.data)
            self._handle(item, new)
            if taken >= self._batching.max_messages or size >= self._batching.max_bytes:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        if taken:
            metrics.BATCH_MESSAGES.observe(taken)

    def _handle(self, item: Pending | InFlight, new: bool) -> None:
        try:
            if isinstance(item, InFlight):
                self._write_received(item)
            elif new:
                self._write_raw(item)
            else:
                self._finish(item, Outcome.UNAVAILABLE, "unavailable")
        except Exception:  # a bug here costs this message a 451, never the writer
            log.exception("writing a message failed")
            pending = item.pending if isinstance(item, InFlight) else item
            self._finish(pending, Outcome.UNAVAILABLE, "failed")

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
                old.flush(1.0)  # serves the purged messages' callbacks: each gets its 451
        log.warning("the producer hit a fatal error; the next messages use a new one")

    def _write_raw(self, pending: Pending) -> None:
        if not pending.future.set_running_or_notify_cancel():
            self._settled(pending)  # the session gave up before its message was taken
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
        flight = InFlight(pending, chunked, [None] * len(chunked.records), producer,
                           raw_left=len(chunked.records))
        count = len(chunked.records)
        for index, record in enumerate(chunked.records):
            error = self._produce(producer, record, self._raw_callback(flight, index),
                                  pending.deadline)
            del record  # the chunk's slice: librdkafka holds its own copy
            if error is not None:  # the chunks not produced end here, with the error
                if flight.settle(error, count - index):
                    self._queue.put(flight)
                return

    def _write_received(self, flight: InFlight) -> None:
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
                                  callback, pending.gives_up)
            if error is not None:
                if flight.settle(error, len(flight.events) - index):
                    self._received(flight)
                return

    @staticmethod
    def _produce(producer: Producer, record: Outgoing, callback: Any,
                 deadline: float) -> KafkaError | None:
        while True:
            try:
                producer.produce(record.topic, value=record.value, key=record.key,
                                 headers=list(record.headers), on_delivery=callback)
                return None
            except BufferError:  # the local queue is full: the poller makes room
                if time.monotonic() >= deadline:
                    return KafkaError(KafkaError._QUEUE_FULL, "the producer's queue stayed full")
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

    def _raw_callback(self, flight: InFlight, index: int) -> Callable[[Any, Any], None]:
        def done(error: KafkaError | None, message: Any) -> None:
            place = acknowledged_at(message) if error is None and message is not None else None
            if place is not None:
                flight.located[index] = place
            else:  # refused, or a place nothing could point at: the message fails
                error = error or _UNKNOWN
                self._note(error)
            if flight.settle(error):
                self._queue.put(flight)  # the chunks are durable: on to MessageReceived
        return done

    def _received_callback(self, flight: InFlight) -> Callable[[Any, Any], None]:
        def done(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                self._note(error)
            if flight.settle(error if message is not None else error or _UNKNOWN):
                self._received(flight)
        return done

    def _received(self, flight: InFlight) -> None:
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
        with self._count_lock:
            self.written += 1
        self._finish(pending, Outcome.DURABLE, "durable")

    def _note(self, error: KafkaError | None) -> None:
        if error is not None and (error.fatal() or error.code() == KafkaError._FATAL):
            self._replace.set()

    def _finish(self, pending: Pending, outcome: Outcome, label: str,
                error: KafkaError | None = None) -> None:
        if not self._settled(pending):
            return
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

    def _settled(self, pending: Pending) -> bool:
        """Count a message out of `waiting`, once: False if it already was."""
        with self._count_lock:
            if pending.finished:
                return False
            pending.finished = True
            self._in_flight -= 1
            return True


_UNKNOWN = KafkaError(KafkaError._FAIL, "acknowledged without an offset")


def _error_of(exc: Exception) -> KafkaError:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else KafkaError(KafkaError._FAIL, str(exc))
