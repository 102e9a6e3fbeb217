"""Records written ahead of the loop's transaction, durably, one caller at a time or many at once
(docs/decisions/0008-apply-writes-outcomes-ahead.md).

Apply records what it did outside Kafka (a delivery's `250`) as soon as it is done, instead of
in its batch's transaction: `write` produces with an idempotent producer (`acks=all`) and
returns only once every record is acknowledged, with its (partition, offset). One producer is
shared by the callers (apply's delivery threads); one thread polls it, which runs the delivery
callbacks, and each call waits for its own acknowledgements only.

A write that is refused or not acknowledged within the bound raises `WriteAheadFailed`: the
loop aborts its batch and rebuilds its state from the log, which holds whatever was written.
The write is never retried in a transaction: a late acknowledgement would make it twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from katagate.eventlog import mail_log
from katagate.eventlog.clients import new_producer
from katagate.eventlog.errors import KafkaUnavailable
from katagate.eventlog.metrics import EVENTS_WRITTEN
from katagate.eventlog.producer import MAX_RECORD_BYTES, WEDGED_GRACE_S, _partition
from katagate.eventlog.records import Outgoing, acknowledged_at
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import Event

log = logging.getLogger(__name__)

ProducerFactory = Callable[[], Producer]


class WriteAheadFailed(KafkaUnavailable):
    """Records written ahead were refused or not acknowledged in time: whether they are in the
    log is known only by reading it. The loop aborts the batch and rebuilds its state."""


def ahead_producer(kafka: KafkaSettings, name: str) -> Producer:
    """An idempotent producer whose acknowledgement means every in-sync replica has the
    record; a record not acknowledged within the request timeout is given up by librdkafka,
    so that its fate is settled before the caller reads the log again."""
    return new_producer(kafka, {
        "client.id": name,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "zstd",
        # A record waits for no other: under load, those queued while requests are in flight
        # still share one.
        "linger.ms": 0,
        "message.max.bytes": MAX_RECORD_BYTES,
        "message.timeout.ms": int(kafka.request_timeout_s * 1000),
        "socket.connection.setup.timeout.ms": int(kafka.request_timeout_s * 1000),
    })


class _Call:
    """One `write`: its records' places, filled by the callbacks, and when all are reported."""

    def __init__(self) -> None:
        self.located: list[tuple[int, int] | None] = []
        self.errors: list[KafkaError] = []
        self.left = 0
        self.produced = False  # every record handed to the producer
        self.lock = threading.Lock()
        self.done = threading.Event()

    def callback(self, index: int) -> Callable[[KafkaError | None, Any], None]:
        def reported(error: KafkaError | None, message: Any) -> None:
            with self.lock:
                if error is not None:
                    self.errors.append(error)
                elif message is not None:  # unlocated (None): the write fails and is redone
                    self.located[index] = acknowledged_at(message)
                self.left -= 1
                if self.produced and self.left == 0:
                    self.done.set()
        return reported

    def all_produced(self) -> None:
        with self.lock:
            self.produced = True
            if self.left == 0:
                self.done.set()


class WriteAhead:
    def __init__(self, producer_factory: ProducerFactory, mail_topic: str, bound_s: float
                 ) -> None:
        """`bound_s`: how long a write waits for its acknowledgements (the producer's own
        `message.timeout.ms` should end first, settling each record's fate)."""
        self._factory = producer_factory
        self._mail = mail_topic
        self._bound_s = bound_s
        self._producer: Producer | None = None
        self._lock = threading.Lock()  # one producer built or replaced at a time
        self._replace = False  # a callback or call saw a fatal error
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="write-ahead-poll", daemon=True)
        self._poller.start()

    @classmethod
    def for_stage(cls, kafka: KafkaSettings, name: str) -> WriteAhead:
        return cls(lambda: ahead_producer(kafka, name), TopicNames(kafka.topic_prefix).mail,
                   kafka.request_timeout_s + WEDGED_GRACE_S)

    def write(self, records: Iterable[Outgoing]) -> list[tuple[int, int]]:
        """Write the records and wait for every acknowledgement; their (partition, offset), in
        order. Records are taken one at a time: a lazy sequence of chunks is never all in
        memory. Raises WriteAheadFailed."""
        producer = self._current()
        call = _Call()
        sources: list[Event] = []
        written: dict[str, int] = {}
        deadline = time.monotonic() + self._bound_s
        try:
            for index, record in enumerate(records):
                with call.lock:
                    call.located.append(None)
                    call.left += 1
                self._produce(producer, record, call.callback(index), deadline)
                if record.source is not None and record.topic == self._mail:
                    sources.append(record.source)
                kind = record.topic.rsplit(".", 1)[-1]  # without the deployment's prefix
                written[kind] = written.get(kind, 0) + 1
                del record  # the chunk's slice: librdkafka holds its own copy
        except WriteAheadFailed:
            with call.lock:  # those produced may still be reported; none is waited for
                call.produced = True
            raise
        call.all_produced()
        if not call.done.wait(max(0.0, deadline - time.monotonic())):
            raise WriteAheadFailed(f"{call.left} records written ahead were not acknowledged "
                                   f"in {self._bound_s:.0f} s")
        if call.errors:
            self._note(call.errors[0])
            raise WriteAheadFailed(f"a record written ahead was refused: {call.errors[0]}")
        places = [place for place in call.located if place is not None]
        if len(places) != len(call.located):
            raise WriteAheadFailed("a record written ahead was acknowledged without an offset")
        for kind, count in written.items():
            EVENTS_WRITTEN.labels(kind).inc(count)
        mail_log.write(sources)  # acknowledged: logged now, and only here
        return places

    def close(self, timeout_s: float = 10.0) -> None:
        producer = self._producer
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.flush(timeout_s)
        self._closed.set()
        self._poller.join(timeout_s)

    def _current(self) -> Producer:
        with self._lock:
            if self._replace and self._producer is not None:
                # A producer that failed fatally writes nothing more; its records in flight
                # got their errors, so their callers failed their batches.
                log.warning("the write-ahead producer hit a fatal error; using a new one")
                old, self._producer = self._producer, None
                with contextlib.suppress(Exception):
                    old.purge()
                    old.flush(1.0)
            self._replace = False
            if self._producer is None:
                try:
                    self._producer = self._factory()
                except KafkaUnavailable as exc:
                    raise WriteAheadFailed(f"no producer to write ahead: {exc}") from exc
            return self._producer

    def _produce(self, producer: Producer, record: Outgoing, callback: Any,
                 deadline: float) -> None:
        while True:
            try:
                producer.produce(record.topic, value=record.value, key=record.key,
                                 headers=list(record.headers), on_delivery=callback,
                                 partition=_partition(record))
                return
            except BufferError:  # the local queue is full: the poller makes room
                if time.monotonic() >= deadline:
                    raise WriteAheadFailed("the write-ahead producer's queue stayed full") \
                        from None
                time.sleep(0.005)
            except KafkaException as exc:  # a producer that failed fatally, a record too large
                self._note(exc.args[0] if exc.args else None)
                raise WriteAheadFailed(f"a record written ahead was refused: {exc}") from exc

    def _note(self, error: Any) -> None:
        if isinstance(error, KafkaError) and (error.fatal() or error.code() == KafkaError._FATAL):
            with self._lock:
                self._replace = True

    def _poll(self) -> None:
        while not self._closed.is_set():
            producer = self._producer
            if producer is None:
                time.sleep(0.05)
                continue
            try:
                producer.poll(0.1)
            except Exception as exc:  # confluent-kafka raises a fatal error from poll()
                log.error("polling the write-ahead producer: %s", exc)
                self._note(exc.args[0] if exc.args else None)
