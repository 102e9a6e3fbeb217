"""Given the real broker, the notifier inside the admission's single writer: a detect decided
for a held message releases its quarantine slot and writes the administrators' notice in the
same batch, to `katagate.quarantine` and mirrored to `katagate.mail`; and a notifier that fails
never keeps the release from being written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from katagate.decider import admission as admission_module
from katagate.decider.admission import Admission, new_control_view
from katagate.eventlog.records import Consumed
from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    ActionDecided,
    NotificationSettings,
    NotificationSettingsChanged,
    ProducerRef,
    encode_event,
)
from tests.integration.kata_harness import publish
from tests.integration.test_projector_live import publish_routed
from tests.integration.test_reached_rarely import received_event
from tests.unit.test_projector_flows import control_flow

pytestmark = pytest.mark.kafka
REF = ProducerRef(stage="decider", instance="t")


def detected(message_id: str) -> ActionDecided:
    return ActionDecided(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), producer=REF,
                         message_id=message_id, action="delete", tag=None, backup=False,
                         skipped=False, reason="detected")


def record(topic: str, offset: int, event) -> Consumed:
    return Consumed(topic, 0, offset, None, encode_event(event))


def batch(admission: Admission, *records: Consumed) -> list:
    """What the loop writes for a batch of these records: each record's outputs, then the
    handler's tick in the same transaction (where the usage record is written once)."""
    out = [o for result in admission.decide_batch(list(records)) for o in result]
    return out + admission.tick()


def writer(kafka_settings) -> tuple[Admission, str]:
    names = TopicNames(kafka_settings.topic_prefix)
    # Given KATA protection on and connected, and an administrator to tell
    publish_routed(kafka_settings, control_flow())
    publish(kafka_settings, names.control, [NotificationSettingsChanged(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), producer=REF, version=3,
        actor="test", settings=NotificationSettings(admin_addresses=["soc@example.net"]),
        changed=["admin_addresses"])])
    control = new_control_view(kafka_settings)
    assert control.wait_caught_up(30)
    return Admission(kafka_settings, control, REF, lambda: datetime.now(UTC),
                     "gw.example.net"), names.mail


def test_a_detect_releases_the_slot_and_notifies_in_one_batch(kafka_settings):
    admission, mail = writer(kafka_settings)
    received = received_event(0)
    admission.decide(record(mail, 0, received))
    assert set(admission.ledger.held) == {received.message_id}
    # When the detect is decided
    out = batch(admission, record(mail, 1, detected(received.message_id)))
    # Then the release and the notice, each to the quarantine topic and its mirror
    written = [(o.topic.rsplit(".", 1)[-1], o.source.type if o.source else None) for o in out]
    assert written == [("quarantine", "quarantine.released"), ("mail", "quarantine.released"),
                       ("quarantine", "notification.composed"),
                       ("mail", "notification.composed"),
                       ("usage", "quarantine.usage_recorded")]
    assert admission.ledger.held == {}


def test_a_failing_notifier_never_keeps_the_release_from_being_written(kafka_settings,
                                                                       monkeypatch):
    admission, mail = writer(kafka_settings)
    received = received_event(1)
    admission.decide(record(mail, 0, received))

    def broken(*_args, **_kwargs):
        raise RuntimeError("the test's notifier bug")

    monkeypatch.setattr(admission_module, "occurrences", broken)
    out = batch(admission, record(mail, 1, detected(received.message_id)))
    assert [o.topic.rsplit(".", 1)[-1] for o in out] == ["quarantine", "mail", "usage"]
    assert admission.ledger.held == {}


def test_the_usage_is_written_at_election_and_with_each_change_never_the_same_twice(
        kafka_settings):
    # Given a newly elected admission over a log with no usage record (a fresh gateway, or one
    # from before the usage topic)
    admission, mail = writer(kafka_settings)
    usage_topic = TopicNames(kafka_settings.topic_prefix).quarantine_usage

    def usage(out) -> list[tuple[int, int, int]]:
        return [(o.source.bytes_in_use, o.source.messages_in_use, o.source.waiting)
                for o in out if o.topic == usage_topic]

    # When it ticks, Then it writes the current usage, under the one compacted key; once
    first = [o for o in admission.tick() if o.topic == usage_topic]
    assert usage(first) == [(0, 0, 0)]
    assert first[0].key == b"usage"
    assert usage(admission.tick()) == []
    # When a message is admitted, Then the new usage goes in the batch of the admission
    received = received_event(2)
    out = admission.decide(record(mail, 0, received))
    assert usage(out) == []  # not per record: once per batch, after the whole batch
    assert usage(admission.tick()) == [(received.size, 1, 0)]
    # And when the admission's batch is aborted, Then the usage is written again after it
    admission.aborted()
    assert usage(admission.tick()) == [(0, 0, 0)]


def test_a_batch_of_admissions_writes_one_usage_record_the_last(kafka_settings):
    # Given an elected admission that wrote the usage at election
    admission, mail = writer(kafka_settings)
    usage_topic = TopicNames(kafka_settings.topic_prefix).quarantine_usage
    admission.tick()
    # When three messages are admitted in one batch
    received = [received_event(10 + i) for i in range(3)]
    out = batch(admission, *(record(mail, i, r) for i, r in enumerate(received)))
    # Then each admission is written, and the usage once, after all three (a compacted topic
    # keeps the newest; one record per change cost a record and a marker each)
    assert [o.source.type for o in out if o.topic.endswith(".quarantine")] == [
        "quarantine.admitted"] * 3
    usage = [o.source for o in out if o.topic == usage_topic]
    assert [(u.bytes_in_use, u.messages_in_use) for u in usage] == [
        (sum(r.size for r in received), 3)]
