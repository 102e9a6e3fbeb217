"""The transactional loop on the real broker: every event type survives the trip through Kafka
and the union decoder; a malformed record is dead-lettered with its reason and the loop goes on."""

from __future__ import annotations

import json
import threading
import time

import pytest

from katagate.eventlog.dead_letters import DLQ_OFFSET, DLQ_REASON, DLQ_STAGE
from katagate.eventlog.handler import Handler, Poison
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import H_TYPE, Consumed, Outgoing
from katagate.eventlog.topics import TopicNames
from katagate.schemas import SchemaError, decode_event
from tests.integration.kafka_read import read_all
from tests.unit.fixtures.events import sample_events

pytestmark = pytest.mark.kafka


def test_every_event_type_round_trips_through_kafka_and_the_decoder(kafka_settings):
    topic = TopicNames(kafka_settings.topic_prefix).control
    events = sample_events()
    producer = TransactionalProducer(kafka_settings, "test-round-trip")
    producer.begin()
    producer.produce([Outgoing.event(topic, event) for event in events])
    producer.commit()

    records = read_all(kafka_settings, topic)

    assert [decode_event(r.value) for r in records] == events
    assert [r.header(H_TYPE) for r in records] == [e.type.encode() for e in events]
    assert [r.key for r in records] == [e.partition_key().encode() for e in events]


class EchoToAudit(Handler):
    """Decodes each record and re-publishes the event on the audit topic."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic

    def decide(self, record: Consumed) -> list[Outgoing]:
        try:
            event = decode_event(record.value or b"")
        except SchemaError as exc:
            raise Poison(str(exc)) from exc
        return [Outgoing.event(self.out_topic, event)]


def test_a_malformed_record_goes_to_the_dead_letter_topic_and_the_loop_keeps_going(
    kafka_settings,
):
    names = TopicNames(kafka_settings.topic_prefix)
    good = sample_events()[:2]
    unknown_type = json.dumps({"type": "mail.teleported", "schema_version": 1}).encode()
    producer = TransactionalProducer(kafka_settings, "test-dlq-input")
    producer.begin()
    producer.produce([
        Outgoing.event(names.control, good[0]),
        Outgoing(names.control, b"\x00not json at all", b"k"),
        Outgoing(names.control, unknown_type, b"k"),
        Outgoing.event(names.control, good[1]),
    ])
    producer.commit()

    loop = TransactionalLoop(
        kafka_settings, stage="test", group_id="test-dlq", transactional_id="test-dlq-loop",
        topics=[names.control], handler=EchoToAudit(names.audit),
        dead_letter_topic=names.deadletter,
    )
    processed = 0
    for _ in range(100):
        processed += loop.run_once()
        if processed >= 4:
            break
    loop.close()

    assert processed == 4
    assert [decode_event(r.value) for r in read_all(kafka_settings,
                                                    names.audit)] == good
    dead = read_all(kafka_settings, names.deadletter)
    assert [r.value for r in dead] == [b"\x00not json at all", unknown_type]
    assert [r.header(DLQ_OFFSET) for r in dead] == [b"1", b"2"]
    assert all(r.header(DLQ_STAGE) == b"test" for r in dead)
    reasons = [(r.header(DLQ_REASON) or b"").decode() for r in dead]
    assert reasons[0].startswith("Poison: ")
    assert "JSON" in reasons[0]
    assert "mail.teleported" in reasons[1]


class EchoToAuditInBatches(EchoToAudit):
    """The same decisions, made a batch at a time, each result in its record's place."""

    def __init__(self, out_topic: str) -> None:
        super().__init__(out_topic)
        self.batches: list[int] = []

    def decide_batch(self, records):
        self.batches.append(len(records))
        results = []
        for record in records:
            try:
                results.append(self.decide(record))
            except Exception as exc:
                results.append(exc)
        return results


def test_a_batching_handler_sets_aside_only_the_records_it_refused(kafka_settings):
    names = TopicNames(kafka_settings.topic_prefix)
    good = sample_events()[:3]
    producer = TransactionalProducer(kafka_settings, "test-batch-input")
    producer.begin()
    producer.produce([
        Outgoing.event(names.control, good[0]),
        Outgoing(names.control, b"\x00not json at all", b"k"),
        Outgoing.event(names.control, good[1]),
        Outgoing.event(names.control, good[2]),
    ])
    producer.commit()
    handler = EchoToAuditInBatches(names.audit)
    loop = TransactionalLoop(
        kafka_settings, stage="test", group_id="test-batch", transactional_id="test-batch-loop",
        topics=[names.control], handler=handler, dead_letter_topic=names.deadletter,
    )
    processed = 0
    for _ in range(100):
        processed += loop.run_once()
        if processed >= 4:
            break
    loop.close()
    assert processed == 4
    assert sum(handler.batches) == 4
    assert [decode_event(r.value) for r in read_all(kafka_settings,
                                                    names.audit)] == good
    dead = read_all(kafka_settings, names.deadletter)
    assert [r.value for r in dead] == [b"\x00not json at all"]
    assert dead[0].header(DLQ_OFFSET) == b"1"


def _publish(settings, topic, events, transactional_id):
    producer = TransactionalProducer(settings, transactional_id)
    producer.begin()
    producer.produce([Outgoing.event(topic, event) for event in events])
    producer.commit()
    producer.close()


def test_a_backlog_waits_the_linger_for_more_records_and_an_idle_stage_never_waits(
        kafka_settings):
    """Records already waiting when the loop gathers (they came in while it decided and
    committed: the stage is busy) wait up to the linger so that later records share their
    transaction; a record that finds the stage idle goes at once, even right after a batch."""
    settings = kafka_settings.model_copy(update={"loop_linger_ms": 1500})
    names = TopicNames(settings.topic_prefix)
    events = sample_events()[:4]
    loop = TransactionalLoop(
        settings, stage="test", group_id="test-linger", transactional_id="test-linger-loop",
        topics=[names.control], handler=EchoToAudit(names.audit),
        dead_letter_topic=names.deadletter,
    )

    def next_batch() -> tuple[int, float]:
        began, count = time.monotonic(), 0
        while count == 0:
            count = loop.run_once()
        return count, time.monotonic() - began

    try:
        while loop.run_once() == 0 and not loop._consumer.assignment():
            pass
        # A record on an idle stage: no wait
        _publish(settings, names.control, events[:1], "test-linger-1")
        assert next_batch()[0] == 1
        # A backlog: a record already fetched when the loop gathers waits, and one published
        # half a second later joins its transaction
        _publish(settings, names.control, events[1:2], "test-linger-2")
        time.sleep(1.0)
        timer = threading.Timer(0.5, _publish, (settings, names.control, events[2:3],
                                                "test-linger-3"))
        timer.start()
        assert next_batch()[0] == 2
        timer.join()
        # Right after that batch, a record that arrives while the loop waits: no linger
        timer = threading.Timer(0.3, _publish, (settings, names.control, events[3:],
                                                "test-linger-4"))
        timer.start()
        count, took = next_batch()
        timer.join()
        assert count == 1
        assert took < 1.4, f"an idle stage waited {took:.2f} s (the linger is 1.5 s)"
    finally:
        loop.close()
