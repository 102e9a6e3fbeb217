"""Topics of docs/ARCHITECTURE.md are created with their layout, idempotently, and a topic that
exists with another partition count is reported, not used."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from katagate.eventlog.clients import new_admin
from katagate.eventlog.errors import TopicError
from katagate.eventlog.topics import TopicSpec, ensure_topics, topic_specs

pytestmark = pytest.mark.kafka


def _config(admin: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + 10
    while True:
        try:
            entries = admin.describe_configs([resource])[resource].result(timeout=10)
        except KafkaException as exc:
            # A topic just created can be unknown to the broker that answers for a moment.
            if (exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART
                    or time.monotonic() > deadline):
                raise
            time.sleep(0.1)
            continue
        return {name: entry.value for name, entry in entries.items()}


def test_every_topic_exists_with_its_partitions_and_configs(kafka_settings):
    admin = new_admin(kafka_settings)
    topics = admin.list_topics(timeout=10).topics
    for spec in topic_specs(kafka_settings):
        assert len(topics[spec.name].partitions) == spec.partitions, spec.name
        actual = _config(admin, spec.name)
        for key, value in spec.config.items():
            assert actual[key] == value, f"{spec.name}: {key}"
    names = {spec.name: spec for spec in topic_specs(kafka_settings)}
    prefix = kafka_settings.topic_prefix
    assert names[f"{prefix}.quarantine"].partitions == 1
    assert names[f"{prefix}.mail"].partitions == kafka_settings.mail_partitions
    assert _config(admin, f"{prefix}.mail.raw")["max.message.bytes"] == str(2 * 1024 * 1024)
    assert _config(admin, f"{prefix}.control")["retention.ms"] == "-1"


def test_creating_again_creates_nothing(kafka_settings):
    admin = new_admin(kafka_settings)
    assert ensure_topics(admin, kafka_settings) == []


def test_a_topic_with_another_partition_count_is_refused_by_name(make_kafka_settings):
    settings = make_kafka_settings(mail_partitions=3)
    admin = new_admin(settings)
    grown = settings.model_copy(update={"mail_partitions": 4})
    with pytest.raises(TopicError, match=rf"{settings.topic_prefix}\.mail has 3 partitions"):
        ensure_topics(admin, grown)


def test_a_custom_spec_is_created_once(kafka_settings):
    admin = new_admin(kafka_settings)
    spec = TopicSpec(f"{kafka_settings.topic_prefix}.extra", 2, {"retention.ms": "3600000"})
    assert ensure_topics(admin, kafka_settings, [spec]) == [spec.name]
    assert ensure_topics(admin, kafka_settings, [spec]) == []
    assert _config(admin, spec.name)["retention.ms"] == "3600000"
