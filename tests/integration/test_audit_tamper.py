"""Invariant 5 of docs/ARCHITECTURE.md on the real broker: a changed, removed or reordered
event is detected.

A few hundred real events are written with the transactional producer (one transaction aborted,
so the log has invisible records and markers), checkpointed twice, then copied record by record
into fresh namespaces with a plain idempotent producer — once faithfully, once per kind of
tampering. The copies' offsets differ from the original's (no transaction markers): the chain
hashes content and order only, so the faithful copy verifies and each tampered one fails at the
range the signed checkpoint names.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from katagate.audit.chain import LogRecord, chain_head
from katagate.audit.checkpoint import Checkpoint, decode, encode, sign
from katagate.audit.checkpointer import checkpoint_once
from katagate.audit.export import export_message
from katagate.audit.keys import AuditKey, load_or_create
from katagate.audit.reading import audited_topics, from_message, new_consumer
from katagate.audit.verify import Finding, Report, verify
from katagate.eventlog.clients import new_producer
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.read_to_end import last_stable_offsets, partitions, read_to_end
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import Event, LedgerEvent, MailEvent
from tests.conftest import ensure_namespace
from tests.unit.fixtures.events import sample_events

pytestmark = pytest.mark.kafka

Place = tuple[str, int]


def variants(first: int, last: int) -> list[list[Event]]:
    """Per message: every sample event with fresh ids; ledger entries also go to quarantine."""
    flows = []
    for i in range(first, last):
        flow = []
        for n, event in enumerate(sample_events()):
            update: dict[str, object] = {"event_id": uuid.UUID(int=(i << 16) + n + 1)}
            if isinstance(event, MailEvent):
                update["message_id"] = f"MSG{i:05d}AUDIT"
            flow.append(event.model_copy(update=update))
        flows.append(flow)
    return flows


def outgoing(names: TopicNames, flow: list[Event]) -> list[Outgoing]:
    records = []
    for event in flow:
        if isinstance(event, MailEvent):
            records.append(Outgoing.event(names.mail, event))
            if isinstance(event, LedgerEvent):
                records.append(Outgoing.event(names.quarantine, event))
        else:
            records.append(Outgoing.event(names.control, event))
    return records


def write(kafka: KafkaSettings, flows: list[list[Event]], abort_one: bool) -> None:
    names = TopicNames(kafka.topic_prefix)
    producer = TransactionalProducer(kafka, f"{kafka.topic_prefix}-test-writer")
    for n, flow in enumerate(flows):
        producer.begin()
        producer.produce(outgoing(names, flow))
        if abort_one and n == 1:
            producer.flush()
            producer.abort("invisible records for the audit to skip")
            continue
        producer.commit()
    producer.close()


def snapshot(kafka: KafkaSettings) -> tuple[dict[Place, list[LogRecord]], list[LogRecord]]:
    """Every committed record: per (relative topic, partition), and the audit topic's."""
    consumer = new_consumer(kafka)
    try:
        topics = audited_topics(kafka.topic_prefix)
        relative = {t: r for r, t in topics.items()}
        audit = TopicNames(kafka.topic_prefix).audit
        places = [(t, p) for t in [*topics.values(), audit]
                  for p in partitions(consumer, t, 10)]
        ends = last_stable_offsets(consumer, places, 10)
        logs: dict[Place, list[LogRecord]] = defaultdict(list)
        audit_records: list[LogRecord] = []
        for r in map(from_message, read_to_end(consumer, dict.fromkeys(places, 0), ends, 30)):
            if r.topic == audit:
                audit_records.append(r)
            else:
                logs[(relative[r.topic], r.partition)].append(r)
        return dict(logs), audit_records
    finally:
        consumer.close()


@dataclass(frozen=True)
class Original:
    kafka: KafkaSettings
    key: AuditKey
    logs: dict[Place, list[LogRecord]]
    audit: list[LogRecord]

    @property
    def checkpoints(self) -> list[Checkpoint]:
        return [decode(r.value) for r in self.audit]

    def ranges(self, place: Place) -> list[Checkpoint]:
        return [cp for cp in self.checkpoints if (cp.topic, cp.partition) == place]


@pytest.fixture(scope="module")
def original(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Original:
    kafka = ensure_namespace(kafka_bootstrap)
    key = load_or_create(tmp_path_factory.mktemp("audit-key"))
    write(kafka, variants(0, 8), abort_one=True)
    assert checkpoint_once(kafka, key) > 0
    write(kafka, variants(8, 12), abort_one=False)
    assert checkpoint_once(kafka, key) > 0
    assert checkpoint_once(kafka, key) == 0  # nothing new
    logs, audit = snapshot(kafka)
    return Original(kafka, key, logs, audit)


def copy_into(bootstrap: str, logs: dict[Place, list[LogRecord]],
              audit: list[LogRecord]) -> KafkaSettings:
    kafka = ensure_namespace(bootstrap)
    topics = audited_topics(kafka.topic_prefix)
    producer = new_producer(kafka, {"enable.idempotence": True, "acks": "all",
                                    "linger.ms": 5})
    targets = [(topics[rel], p, r) for (rel, p), records in logs.items() for r in records]
    targets += [(TopicNames(kafka.topic_prefix).audit, 0, r) for r in audit]
    for topic, partition, r in targets:
        producer.produce(topic, value=r.value, key=r.key, headers=list(r.headers),
                         partition=partition)
    assert producer.flush(30) == 0
    return kafka


def busiest_mail(original: Original) -> tuple[Place, Checkpoint]:
    """The mail partition with the most records, and its first signed range."""
    place = max((p for p in original.logs if p[0] == "mail"),
                key=lambda p: len(original.logs[p]))
    first = original.ranges(place)[0]
    assert first.count >= 4
    return place, first


def run_copy(bootstrap: str, original: Original, logs: dict[Place, list[LogRecord]],
             audit: list[LogRecord]) -> tuple[KafkaSettings, Report]:
    kafka = copy_into(bootstrap, logs, audit)
    names = TopicNames(kafka.topic_prefix)
    return kafka, verify(kafka, kafka.topic_prefix, names.audit, original.key.public_key)


def failures_at(report: Report, kafka: KafkaSettings, place: Place) -> list[Finding]:
    topic = audited_topics(kafka.topic_prefix)[place[0]]
    return [f for f in report.failures if (f.topic, f.partition) == (topic, place[1])]


def test_the_original_and_a_faithful_copy_verify(kafka_bootstrap: str,
                                                  original: Original) -> None:
    report = verify(original.kafka, original.kafka.topic_prefix,
                    TopicNames(original.kafka.topic_prefix).audit, original.key.public_key)
    assert report.ok, report.lines()
    assert report.notes == []  # everything is covered
    assert report.records == sum(len(v) for v in original.logs.values()) > 300
    assert all(r.ok for r in report.ranges)

    _kafka, copy = run_copy(kafka_bootstrap, original, original.logs, original.audit)
    assert copy.ok, copy.lines()
    assert copy.records == report.records


def test_a_changed_payload_is_named_by_its_range(kafka_bootstrap: str,
                                                 original: Original) -> None:
    place, first = busiest_mail(original)
    logs = dict(original.logs)
    records = list(logs[place])
    target = records[first.position + first.count // 2]
    body = json.loads(target.value or b"")
    body["producer"]["instance"] = "tampered"
    records[first.position + first.count // 2] = replace(
        target, value=json.dumps(body, separators=(",", ":")).encode())
    logs[place] = records

    kafka, report = run_copy(kafka_bootstrap, original, logs, original.audit)

    assert not report.ok
    [finding] = report.failures
    assert (finding.topic, finding.partition) == (TopicNames(kafka.topic_prefix).mail, place[1])
    assert (finding.first_offset, finding.last_offset) == (first.first_offset, first.last_offset)
    assert "chain head differs from the signed checkpoint" in finding.message
    assert f"offsets {first.first_offset}\N{EN DASH}{first.last_offset}" in finding.message

    # The export marks the tampered message's covering checkpoint as failing.
    message_id = (target.key or b"").decode()
    lines, _ = export_message(kafka, kafka.topic_prefix, TopicNames(kafka.topic_prefix).audit,
                              message_id, original.key.public_key)
    changed = [line for line in lines if line["event"]["producer"]["instance"] == "tampered"]
    assert len(changed) == 1
    assert changed[0]["checkpoint"]["verified"] is False


def test_a_dropped_record_is_named_by_its_range(kafka_bootstrap: str,
                                                original: Original) -> None:
    place, first = busiest_mail(original)
    logs = dict(original.logs)
    logs[place] = [r for i, r in enumerate(logs[place]) if i != first.position + 1]

    kafka, report = run_copy(kafka_bootstrap, original, logs, original.audit)

    assert not report.ok
    found = failures_at(report, kafka, place)
    assert found, report.lines()
    assert (found[0].first_offset, found[0].last_offset) == (first.first_offset,
                                                             first.last_offset)
    # Nothing else is blamed.
    assert len(failures_at(report, kafka, place)) == len(report.failures)


def test_two_swapped_records_are_named_by_their_range(kafka_bootstrap: str,
                                                      original: Original) -> None:
    place, first = busiest_mail(original)
    logs = dict(original.logs)
    records = list(logs[place])
    i = first.position + 1
    records[i], records[i + 1] = records[i + 1], records[i]
    logs[place] = records

    kafka, report = run_copy(kafka_bootstrap, original, logs, original.audit)

    [finding] = report.failures
    assert (finding.topic, finding.partition) == (TopicNames(kafka.topic_prefix).mail, place[1])
    assert (finding.first_offset, finding.last_offset) == (first.first_offset, first.last_offset)


def test_a_checkpoint_forged_without_the_key_is_refused(kafka_bootstrap: str,
                                                        original: Original) -> None:
    # The forger changes a payload and re-signs the range's checkpoint with a key of its own.
    place, first = busiest_mail(original)
    logs = dict(original.logs)
    records = list(logs[place])
    records[first.position] = replace(records[first.position], value=b'{"forged":true}')
    logs[place] = records
    forged = sign(first.model_copy(update={
        "head": chain_head(records[first.position:first.position + first.count],
                           bytes.fromhex(first.previous_head)).hex(),
    }), Ed25519PrivateKey.generate())
    audit = [replace(r, value=encode(forged)) if decode(r.value) == first else r
             for r in original.audit]

    kafka, report = run_copy(kafka_bootstrap, original, logs, audit)

    bad = [f for f in report.failures if "bad signature" in f.message]
    assert len(bad) == 1, report.lines()
    assert (bad[0].topic, bad[0].partition) == (TopicNames(kafka.topic_prefix).mail, place[1])
    assert (bad[0].first_offset, bad[0].last_offset) == (first.first_offset, first.last_offset)
    assert f"checkpoint {original.checkpoints.index(first)} " in bad[0].message


def test_a_removed_checkpoint_breaks_continuity(kafka_bootstrap: str,
                                                original: Original) -> None:
    place = ("quarantine", 0)
    removed, following = original.ranges(place)[:2]
    audit = [r for r in original.audit if decode(r.value) != removed]

    kafka, report = run_copy(kafka_bootstrap, original, original.logs, audit)

    [finding] = report.failures
    assert (finding.topic, finding.partition) == (TopicNames(kafka.topic_prefix).quarantine, 0)
    assert finding.first_offset is not None
    assert finding.last_offset is not None
    assert finding.first_offset <= removed.first_offset
    assert removed.last_offset <= finding.last_offset < following.first_offset
    assert "a checkpoint was removed" in finding.message


def test_uncovered_records_are_a_note_not_a_failure(kafka_bootstrap: str,
                                                    original: Original) -> None:
    # The last checkpoint of control[0] removed: its records are merely not yet covered.
    last = original.ranges(("control", 0))[-1]
    audit = [r for r in original.audit if decode(r.value) != last]

    kafka, report = run_copy(kafka_bootstrap, original, original.logs, audit)

    assert report.ok, report.lines()
    [note] = report.notes
    assert note.message.startswith(f"{TopicNames(kafka.topic_prefix).control}[0] records after")
    assert f"not yet covered ({last.count} records)" in note.message

