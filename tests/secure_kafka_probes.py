"""Probes of what a principal may do on the secured broker: write in a transaction, produce
plainly, join a group, fetch. Each answers None when allowed, else the broker's error code
(tests/integration/test_secure_kafka.py)."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException

from katagate.eventlog.clients import new_consumer, new_producer
from katagate.eventlog.errors import KafkaUnavailable
from katagate.eventlog.producer import TransactionalProducer, TransactionFailed
from katagate.eventlog.settings import KafkaSettings
from tests.secure_kafka import REQUEST_TIMEOUT_S, error_code


def committed_one(settings: KafkaSettings, transactional_id: str, topic: str,
                  value: bytes = b"v") -> int | None:
    """One record written in a transaction: None when committed, else the broker's error code
    (a topic the principal may see is refused when added to the transaction, one it may not
    even see in the record's delivery report)."""
    try:
        producer = TransactionalProducer(settings, transactional_id)
    except KafkaUnavailable as exc:  # init_transactions
        return error_code(exc)
    reports: list[KafkaError | None] = []
    producer.begin()
    try:
        producer.raw.produce(topic, value, b"key",
                             on_delivery=lambda error, _m: reports.append(error))
    except KafkaException as exc:  # the topic already known to be refused
        producer.abort(reason="the test's record was refused")
        return error_code(exc)
    try:
        producer.commit()
    except TransactionFailed as exc:
        codes = [error_code(exc), *(int(e.code()) for e in reports if e is not None)]
        # Local codes (negative: purged, inconsistent) only say that something else failed.
        return next((code for code in codes if code is not None and code > 0), codes[0])
    return None


def produced_plainly(settings: KafkaSettings, topic: str, value: bytes = b"plain",
                     idempotent: bool = False) -> int | None:
    """One record by a plain producer, outside any transaction: None when acknowledged.
    `idempotent`: as ingest writes (ingest/run.py's durable_producer)."""
    reports: list[KafkaError | None] = []
    producer = new_producer(settings, {"client.id": "katagate-test", "acks": "all",
                                       "enable.idempotence": idempotent,
                                       "message.timeout.ms": int(REQUEST_TIMEOUT_S * 1000)})
    try:
        producer.produce(topic, value, b"key",
                         on_delivery=lambda error, _m: reports.append(error))
    except KafkaException as exc:  # the topic already known to be refused
        return error_code(exc)
    assert producer.flush(REQUEST_TIMEOUT_S + 5) == 0
    [error] = reports
    return None if error is None else int(error.code())


def joined(settings: KafkaSettings, group: str, topic: str, wait_s: float = 15.0
           ) -> int | None:
    """Subscribe in `group`: None once partitions are assigned, else the error consume() gave."""
    consumer = new_consumer(settings, {"group.id": group, "auto.offset.reset": "earliest",
                                       "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for message in consumer.consume(10, 0.2):
                if (error := message.error()) is not None:
                    return int(error.code())
            if consumer.assignment():
                return None
        raise AssertionError(f"neither assigned nor refused in {wait_s} s")
    finally:
        consumer.close()


def fetched(settings: KafkaSettings, group: str, topic: str, wait_s: float = 15.0
            ) -> int | None:
    """Subscribe in `group` and fetch: None once a record or the partition's end is reached,
    else the error consume() gave. (Being assigned a topic is not reading it: the assignment
    needs only DESCRIBE, which a WRITE grant implies; the fetch needs READ.)"""
    consumer = new_consumer(settings, {"group.id": group, "auto.offset.reset": "earliest",
                                       "enable.auto.commit": False,
                                       "enable.partition.eof": True})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for message in consumer.consume(10, 0.2):
                error = message.error()
                if error is None or error.code() == KafkaError._PARTITION_EOF:
                    return None
                return int(error.code())
        raise AssertionError(f"neither fetched nor refused in {wait_s} s")
    finally:
        consumer.close()
