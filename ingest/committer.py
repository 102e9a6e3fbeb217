"""Group commit: one writer thread owns the transactional producer; SMTP sessions hand it
accepted messages and wait for the outcome of the transaction that carried theirs.

Each transaction holds, for every message of the batch, its raw chunks (katagate.mail.raw)
and then its MessageReceived (katagate.mail), which points at the chunks' offsets. Messages
that arrive while a transaction commits, or within the linger, share the next one.

Bounds: a message carries a deadline. The writer never begins writing a message past it, and
aborts a transaction it could not commit before the earliest deadline of its batch, so a `451`
(the waiter gave up) almost never meets a committed message. Almost: a commit the broker
completed while its reply was late stays committed; readers may see the message again when the
sender retries (it gets a new id; the sha256 and envelope tell them apart).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException

from katagate.eventlog.errors import KafkaUnavailable, KatagateError
from katagate.eventlog.health import Health, Part
from katagate.eventlog.producer import TransactionalProducer, TransactionFailed
from katagate.eventlog.raw import CHUNK_BYTES, chunk
from katagate.eventlog.records import Outgoing
from katagate.eventlog.topics import TopicNames
from katagate.ingest import metrics
from katagate.ingest.received import Accepted, received_events
from katagate.schemas import ProducerRef, RawLocation

log = logging.getLogger(__name__)


class Outcome(Enum):
    COMMITTED = "committed"
    UNAVAILABLE = "kafka_unavailable"  # Kafka refused or did not answer
    TIMEOUT = "commit_timeout"  # not committed within the bound


@dataclass(frozen=True)
class Batching:
    max_messages: int = 64
    max_bytes: int = 32 * 1024 * 1024
    linger_s: float = 0.002


@dataclass
class _Pending:
    accepted: Accepted
    deadline: float  # time.monotonic(): nothing of this message is committed after it
    submitted: float
    future: concurrent.futures.Future[Outcome]


class _Late(Exception):
    """The batch's earliest deadline passed before its commit."""


ProducerFactory = Callable[[], TransactionalProducer]


class GroupCommitter:
    def __init__(
        self,
        producer_factory: ProducerFactory,
        topics: TopicNames,
        producer_ref: ProducerRef,
        batching: Batching | None = None,
        before_commit: Callable[[], None] | None = None,  # a test seam: a slow commit
        part: Part | None = None,
        blocking_s: float = 0.0,
    ) -> None:
        """`part`: this writer in the process's health; it beats at each turn, a turn
        blocking at most `blocking_s` (a producer's start, a commit to its deadline)."""
        self._part = part or Health().part("ingest-writer")
        self._blocking_s = blocking_s
        self._factory = producer_factory
        self._topics = topics
        self._ref = producer_ref
        self._batching = batching or Batching()
        self._before_commit = before_commit
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._carry: _Pending | None = None
        self._producer: TransactionalProducer | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self.ready = threading.Event()  # a producer is initialised
        self.transactions = 0  # committed, for tests and benchmarks

    def start(self) -> None:
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Messages handed over and not yet taken into a batch."""
        return self._queue.qsize()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the batch in hand, fail what waits, and close the producer."""
        self._stopping.set()
        self._thread.join(timeout_s)

    def submit(self, accepted: Accepted, bound_s: float) -> concurrent.futures.Future[Outcome]:
        now = time.monotonic()
        # The writer's deadline falls a little before the waiter's, so that the writer, not
        # the waiter's timer, decides the outcome whenever the writer is responsive.
        margin = min(0.2, bound_s / 10)
        pending = _Pending(accepted, now + bound_s - margin, now, concurrent.futures.Future())
        if self._stopping.is_set():
            pending.future.set_result(Outcome.UNAVAILABLE)
        else:
            self._queue.put(pending)
        return pending.future

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        with contextlib.suppress(KatagateError):
            self._ensure_producer()
        while not self._stopping.is_set():
            self._part.beat(blocking_s=self._blocking_s)
            batch = self._collect()
            if batch:
                self._write(batch)
        for pending in self._drain():
            self._resolve(pending, Outcome.UNAVAILABLE)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close()

    def _collect(self) -> list[_Pending]:
        first = self._carry
        self._carry = None
        if first is None:
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                return []
        batch, size = [first], len(first.accepted.data)
        linger_end = time.monotonic() + self._batching.linger_s
        while len(batch) < self._batching.max_messages:
            remaining = linger_end - time.monotonic()
            try:
                item = (self._queue.get(timeout=remaining) if remaining > 0
                        else self._queue.get_nowait())
            except queue.Empty:
                break
            if size + len(item.accepted.data) > self._batching.max_bytes:
                self._carry = item
                break
            batch.append(item)
            size += len(item.accepted.data)
        return batch

    def _drain(self) -> list[_Pending]:
        items = [self._carry] if self._carry else []
        self._carry = None
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(self._queue.get_nowait())
        return items

    def _ensure_producer(self) -> TransactionalProducer:
        if self._producer is None:
            try:
                self._producer = self._factory()
            except KatagateError as exc:
                self._part.not_ready("kafka_unavailable", type(exc).__name__)
                raise
            self.ready.set()
            self._part.ready("ready", "transactional producer initialised")
        return self._producer

    def _write(self, batch: list[_Pending]) -> None:
        # A cancelled future is a waiter that gave up (timeout, disconnect): never write it.
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        now = time.monotonic()
        for pending in live:
            if now >= pending.deadline:
                self._resolve(pending, Outcome.TIMEOUT)
        live = [p for p in live if now < p.deadline]
        if not live:
            return
        try:
            producer = self._ensure_producer()
        except KatagateError as exc:
            log.warning("Kafka unavailable, %d messages refused with 451: %s", len(live), exc)
            self._finish(live, Outcome.UNAVAILABLE, "unavailable")
            return
        try:
            self._transaction(producer, live, min(p.deadline for p in live))
        except _Late:
            log.warning("commit bound passed, aborting a batch of %d", len(live))
            self._recover(producer, None)
            self._finish(live, Outcome.TIMEOUT, "late")
        except KafkaException as exc:
            log.warning("transaction failed: %s", exc.args[0])
            self._recover(producer, exc.args[0])
            self._finish(live, Outcome.UNAVAILABLE, "failed")
        except KafkaUnavailable as exc:  # a record refused, not acknowledged in time
            log.warning("transaction failed: %s", exc)
            self._recover(producer, None)
            self._finish(live, Outcome.UNAVAILABLE, "failed")
        except Exception:
            log.exception("transaction failed")
            self._recover(producer, None)
            self._finish(live, Outcome.UNAVAILABLE, "failed")
        else:
            producer.committed()  # the mail log's `ingest` lines, now that the log holds them
            self.transactions += 1
            metrics.BATCH_MESSAGES.observe(len(live))
            self._finish(live, Outcome.COMMITTED, "committed")

    def _transaction(self, producer: TransactionalProducer, batch: list[_Pending],
                     deadline: float) -> None:
        producer.begin()
        chunked = [chunk(self._topics.raw, p.accepted.message_id, p.accepted.data,
                         head=p.accepted.trace)
                   for p in batch]
        located = producer.produce_located(r for c in chunked for r in c.records)
        events, start = [], 0
        for pending, parts in zip(batch, chunked, strict=True):
            places = located[start:start + len(parts.records)]
            start += len(parts.records)
            if len({partition for partition, _ in places}) != 1:
                raise TransactionFailed("a message's chunks landed in several partitions")
            location = RawLocation(topic=self._topics.raw, partition=places[0][0],
                                   offsets=[offset for _, offset in places],
                                   chunk_bytes=CHUNK_BYTES)
            events += received_events(pending.accepted, self._ref, parts.sha256,
                                      parts.size, location)
        producer.produce(Outgoing.event(self._topics.mail, event) for event in events)
        if self._before_commit is not None:
            self._before_commit()
        self._commit(producer, deadline)

    @staticmethod
    def _commit(producer: TransactionalProducer, deadline: float) -> None:
        # TransactionalProducer.commit waits up to the request timeout; ours is the deadline.
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Late
            try:
                producer.raw.commit_transaction(remaining)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() == KafkaError._TIMED_OUT:
                    raise _Late from exc
                if not error.retriable():
                    raise

    def _recover(self, producer: TransactionalProducer, error: KafkaError | None) -> None:
        """Leave no transaction open: abort, or drop the producer (its successor's
        init_transactions fences it and aborts what it left)."""
        try:
            if error is not None and not error.txn_requires_abort():
                raise TransactionFailed(str(error))
            producer.abort(reason=str(error) if error else "ingest batch failed")
        except Exception as exc:  # whatever happened, a new producer is safe
            log.warning("dropping the producer (%s); the next batch makes a new one", exc)
            self._producer = None

    def _finish(self, batch: list[_Pending], outcome: Outcome, label: str) -> None:
        metrics.TRANSACTIONS.labels(label).inc()
        if outcome is Outcome.COMMITTED:
            self._part.ready("ready", "the last transaction committed")
        else:  # until a transaction commits again (messages get 451 meanwhile)
            self._part.not_ready("not_committing", f"the last transaction: {label}")
        for pending in batch:
            self._resolve(pending, outcome)

    @staticmethod
    def _resolve(pending: _Pending, outcome: Outcome) -> None:
        metrics.COMMIT_SECONDS.observe(time.monotonic() - pending.submitted)
        if pending.future.done():
            return
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            pending.future.set_result(outcome)


class Committer(Protocol):
    """What an SMTP session hands its accepted message to."""

    def submit(self, accepted: Accepted, bound_s: float) -> concurrent.futures.Future[Outcome]:
        ...


class CommitterPool:
    """Several group committers, each its own writer thread and transactional producer. A
    message goes to the one with the fewest waiting: the others are then usually committing,
    and the next batch does not wait for their commit to end."""

    def __init__(self, committers: list[GroupCommitter]) -> None:
        if not committers:
            raise ValueError("a pool needs at least one committer")
        self._committers = committers
        self.ready = threading.Event()  # every writer has its producer

    def start(self) -> None:
        for committer in self._committers:
            committer.start()
        threading.Thread(target=self._watch_ready, name="ingest-writers-ready",
                         daemon=True).start()

    def _watch_ready(self) -> None:
        for committer in self._committers:
            committer.ready.wait()
        self.ready.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        for committer in self._committers:
            committer.stop(timeout_s)

    def submit(self, accepted: Accepted, bound_s: float) -> concurrent.futures.Future[Outcome]:
        committer = min(self._committers, key=lambda c: c.waiting)
        return committer.submit(accepted, bound_s)

    @property
    def transactions(self) -> int:
        return sum(c.transactions for c in self._committers)
