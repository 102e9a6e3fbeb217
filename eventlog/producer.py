"""One transactional producer wrapper for the whole project.

librdkafka implements the older transaction protocol: after a commit or abort that timed out, or
any fatal error, the only safe move is a new producer with the same transactional.id, whose
`init_transactions` fences the old one and aborts what it left open.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from katagate.eventlog import mail_log
from katagate.eventlog.clients import new_producer
from katagate.eventlog.errors import KafkaUnavailable, KatagateError
from katagate.eventlog.metrics import EVENTS_WRITTEN
from katagate.eventlog.records import Outgoing, acknowledged_at
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import Event

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 2 * 1024 * 1024 + 65536
WEDGED_GRACE_S = 5.0  # beyond librdkafka's own timeout, before a call counts as stuck


class TransactionFailed(KafkaUnavailable):
    """The transaction was aborted (or its outcome is unknown); nothing of it is visible."""


class ProducerWedged(KafkaUnavailable):
    """A call into librdkafka did not return in time; the producer was replaced, and the
    consumer whose offsets it carried may be as stale: start the loop over."""


class ProducerFenced(KatagateError):
    """Another instance with our transactional.id took over: this one must stop, not retry."""


_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}


def is_fenced(error: KafkaError | None) -> bool:
    return error is not None and error.code() in _FENCED


def _partition(record: Outgoing) -> int:
    """The record's partition when it names one; else -1, the partitioner's choice by key."""
    return -1 if record.partition is None else record.partition


def producer_config(settings: KafkaSettings, transactional_id: str) -> dict[str, Any]:
    return {
        "transactional.id": transactional_id,
        "client.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "zstd",
        # Records of one transaction travel in as few requests as possible.
        "linger.ms": 2,
        "message.max.bytes": MAX_RECORD_BYTES,
        "transaction.timeout.ms": settings.transaction_timeout_ms,
        # The first request of the next transaction meets CONCURRENT_TRANSACTIONS until the
        # previous one's markers are written; the default 100 ms backoff would then cap a loop
        # at about ten transactions a second.
        "retry.backoff.ms": 5,
        "retry.backoff.max.ms": 100,
        "socket.connection.setup.timeout.ms": int(settings.request_timeout_s * 1000),
    }


class _DaemonCaller:
    """Runs calls one at a time on a daemon thread. Not a ThreadPoolExecutor: its threads are
    joined at interpreter exit, so a call stuck in librdkafka would keep the stage from ever
    exiting."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Any, tuple[Any, ...]] | None]
        self._calls = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="send-offsets", daemon=True).start()

    def submit(self, function: Any, *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put((future, function, args))
        return future

    def stop(self) -> None:
        """End the thread once the calls before it are done (a stuck one keeps it, as before)."""
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            future, function, args = call
            try:
                future.set_result(function(*args))
            except BaseException as exc:
                future.set_exception(exc)


class TransactionalProducer:
    """begin → produce → (send offsets) → commit, with a fresh producer after fatal outcomes."""

    def __init__(self, settings: KafkaSettings, transactional_id: str) -> None:
        self._settings = settings
        self._config = producer_config(settings, transactional_id)
        self._timeout = settings.request_timeout_s
        self._producer = self._new_producer()
        self._delivery_errors: list[KafkaError] = []
        self._written: Counter[str] = Counter()  # records per topic in the open transaction
        # The message events of the open transaction, for the mail log once it commits; the
        # ledger's copies on other topics are the same events, logged once.
        self._mail_topic = TopicNames(settings.topic_prefix).mail
        self._mail_events: list[Event] = []
        self._watchdog = _DaemonCaller()

    @property
    def raw(self) -> Producer:
        return self._producer

    def _new_producer(self) -> Producer:
        producer = new_producer(self._settings, self._config)
        try:
            producer.init_transactions(self._timeout)
        except KafkaException as exc:
            raise KafkaUnavailable(f"init_transactions failed: {exc.args[0]}") from exc
        return producer

    def recreate(self) -> None:
        log.warning("re-creating the transactional producer %s", self._config["transactional.id"])
        old = self._producer
        # An old producer being replaced may already be broken: its flush may fail.
        with contextlib.suppress(Exception):
            old.flush(0)
        self._producer = self._new_producer()

    def begin(self) -> None:
        self._delivery_errors = []
        self._written.clear()
        self._mail_events = []
        self._producer.begin_transaction()

    def produce(self, records: Iterable[Outgoing]) -> None:
        for record in records:
            self._written[record.topic] += 1
            self._keep_for_mail_log(record)
            while True:
                try:
                    self._producer.produce(
                        record.topic, value=record.value, key=record.key,
                        headers=list(record.headers), on_delivery=self._on_delivery,
                        partition=_partition(record),
                    )
                    break
                except BufferError:
                    # The local queue is full: serve delivery reports to make room.
                    self._producer.poll(0.05)

    def produce_located(self, records: Iterable[Outgoing]) -> list[tuple[int, int]]:
        """Produce within the open transaction and wait for each record's (partition, offset):
        events that point at raw chunks need the chunks' offsets before they are written.
        Records are taken one at a time, so a lazy sequence of chunks is never all in memory."""
        located: list[tuple[int, int] | None] = []

        def on_delivery(index: int) -> Any:
            def callback(error: KafkaError | None, message: Any) -> None:
                if error is not None:
                    self._delivery_errors.append(error)
                else:
                    located[index] = acknowledged_at(message)
            return callback

        for index, record in enumerate(records):
            located.append(None)
            self._written[record.topic] += 1
            self._keep_for_mail_log(record)
            while True:
                try:
                    self._producer.produce(
                        record.topic, value=record.value, key=record.key,
                        headers=list(record.headers), on_delivery=on_delivery(index),
                        partition=_partition(record),
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
            del record  # the chunk's slice: librdkafka holds its own copy
        self.flush()
        if any(place is None for place in located):
            self.abort("a record was acknowledged without an offset")
            raise TransactionFailed("a record was acknowledged without an offset; aborted")
        return [place for place in located if place is not None]

    def flush(self) -> None:
        """Wait until every record of the transaction is acknowledged (offsets known)."""
        try:
            remaining = self._producer.flush(self._timeout)
        except SystemError as exc:
            # confluent-kafka can fail a flush without setting an exception when the producer
            # hit a fatal error (a fenced producer, typically); the transaction API names it.
            try:
                self._producer.abort_transaction(self._timeout)
            except KafkaException as named:
                raise named from exc
            raise TransactionFailed("flush failed without an error; aborted") from exc
        # Failed: no transaction is left open to stall read_committed readers (the loop, which
        # catches TransactionFailed, takes the transaction as ended).
        if remaining:
            self.abort(f"{remaining} records not acknowledged")
            raise TransactionFailed(
                f"{remaining} records not acknowledged in {self._timeout} s; aborted")
        if self._delivery_errors:
            self.abort(f"a record was refused: {self._delivery_errors[0]}")
            raise TransactionFailed(f"a record was refused: {self._delivery_errors[0]}; aborted")

    def send_offsets(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        # librdkafka can block here long past the timeout when the group coordinator went
        # away mid-transaction (confluentinc/librdkafka#5456; seen after a broker crash: the
        # decider waited for minutes with the broker back). So wait on our side; past it,
        # fence the wedged producer with a new one (its blocked call is left behind) and
        # let the caller start over.
        call = self._watchdog.submit(self._producer.send_offsets_to_transaction, offsets,
                                     group_metadata, self._timeout)
        try:
            call.result(self._timeout + WEDGED_GRACE_S)
        except concurrent.futures.TimeoutError:
            self._watchdog = _DaemonCaller()  # the old one's thread stays stuck in the call
            self.recreate()
            raise ProducerWedged(
                f"send_offsets_to_transaction did not return in {self._timeout:.0f} s; "
                "the producer was replaced") from None

    def commit(self, timeout_s: float | None = None) -> None:
        """Commit, retrying what is retriable within `timeout_s` (default: the request timeout);
        otherwise abort (or fence) and raise."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self._timeout)
        while True:
            try:
                self._producer.commit_transaction(max(0.1, deadline - time.monotonic()))
                for topic, count in self._written.items():
                    # Without the deployment's prefix: one label value per topic kind.
                    EVENTS_WRITTEN.labels(topic.rsplit(".", 1)[-1]).inc(count)
                self._written.clear()
                self.committed()
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.retriable() and time.monotonic() < deadline:
                    continue
                self.fail(error)
                raise TransactionFailed(f"commit failed: {error}") from exc

    def committed(self) -> None:
        """The open transaction committed: its message events go to the mail log. `commit`
        calls it."""
        events, self._mail_events = self._mail_events, []
        mail_log.write(events)

    def _keep_for_mail_log(self, record: Outgoing) -> None:
        if record.source is not None and record.topic == self._mail_topic:
            self._mail_events.append(record.source)

    def fail(self, error: KafkaError | None) -> None:
        """Leave no transaction open after `error`: abort it, or fence it with a new producer."""
        if is_fenced(error):
            # Re-creating would fence the successor in turn: two instances fighting forever.
            raise ProducerFenced(f"producer {self._config['transactional.id']} was fenced: {error}")
        if error is not None and (error.fatal() or not error.txn_requires_abort()):
            # Fatal, or an outcome we cannot know (a timed-out commit): only fencing is safe.
            self.recreate()
        else:
            self.abort(reason=str(error))

    def abort(self, reason: str = "") -> None:
        log.warning("aborting a transaction: %s", reason)
        try:
            self._producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            log.warning("abort failed (%s): a new producer fences the old one", exc.args[0])
            self.recreate()

    def close(self) -> None:
        self._producer.flush(self._timeout)
        self._watchdog.stop()

    def _on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self._delivery_errors.append(error)
