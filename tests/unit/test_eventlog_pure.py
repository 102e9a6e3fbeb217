"""The pure parts of the Kafka plumbing: broker configuration, settings, record ids."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import ValidationError

from katagate.eventlog.broker.classpath import kafka_version, pom_text
from katagate.eventlog.broker.properties import new_cluster_id, server_properties
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames, topic_specs
from tests.unit.fixtures.events import sample_events


def _props(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def test_given_one_node_when_rendering_then_every_internal_topic_has_factor_one():
    props = _props(server_properties(port=9092, controller_port=9093, log_dir=Path("/d")))
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["auto.create.topics.enable"] == "false"


def test_a_cluster_id_is_sixteen_bytes_in_url_safe_base64_without_padding():
    # 2,000 ids: one in 64 random ones starts with '-', so this would meet some.
    ids = {new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert "=" not in cluster_id
        assert not cluster_id.startswith("-")  # a command line would take it for an option
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_the_pinned_kafka_version_is_a_4x_release():
    assert kafka_version().startswith("4.")
    assert "log4j-slf4j" in pom_text()


def test_bootstrap_servers_come_from_the_conventional_variable(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "10.0.0.1:9092,10.0.0.2:9092")
    monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", "site-a")
    settings = KafkaSettings()
    assert settings.bootstrap_servers == "10.0.0.1:9092,10.0.0.2:9092"
    assert TopicNames(settings.topic_prefix).mail == "site-a.mail"


@pytest.mark.parametrize(
    ("field", "value"),
    [("mail_partitions", 0), ("topic_prefix", "has space"), ("transaction_timeout_ms", 10)],
)
def test_out_of_range_settings_are_refused_by_name(field, value):
    with pytest.raises(ValidationError, match=field):
        KafkaSettings(**{field: value})


def test_the_quarantine_and_control_topics_have_one_partition_whatever_the_mail_count():
    specs = {s.name: s for s in topic_specs(KafkaSettings(mail_partitions=12))}
    assert specs["katagate.quarantine"].partitions == 1
    assert specs["katagate.control"].partitions == 1
    assert specs["katagate.mail"].partitions == 12
    assert specs["katagate.mail.raw"].partitions == 12


def test_the_usage_topic_is_one_compacted_partition_created_with_the_others():
    # Given `katagate topics create`, Then ingest's usage topic is there: its newest record kept
    usage = {s.name: s for s in topic_specs(KafkaSettings())}["katagate.quarantine.usage"]
    assert (usage.partitions, usage.config["cleanup.policy"]) == (1, "compact")


def test_derived_ids_are_stable_per_position_and_distinct_across_positions():
    a = Consumed("t", 0, 41, b"k", b"v")
    again = Consumed("t", 0, 41, b"other", b"bytes")
    b = Consumed("t", 0, 42, b"k", b"v")
    assert a.derived_id(0) == again.derived_id(0)
    assert a.derived_id(0) != a.derived_id(1)
    assert a.derived_id(0) != b.derived_id(0)


def test_an_outgoing_event_is_keyed_and_labelled_for_readers_that_do_not_parse_it():
    event = sample_events()[0]
    record = Outgoing.event("topic", event)
    assert record.key == event.partition_key().encode()
    assert dict(record.headers)["katagate-type"] == event.type.encode()
    assert dict(record.headers)["katagate-event-id"] == str(event.event_id).encode()


def test_a_node_of_three_replicates_everything_three_times_with_two_in_sync():
    voters = {1: 9101, 2: 9102, 3: 9103}
    props = _props(server_properties(port=9092, controller_port=9102, log_dir=Path("/d"),
                                     node_id=2, voters=voters))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103")
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "default.replication.factor", "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr",
                "share.coordinator.state.topic.min.isr"):
        assert props[key] == "2", key
    assert props["unclean.leader.election.enable"] == "false"


def test_clients_can_be_sent_through_a_proxy_while_brokers_talk_directly():
    props = _props(server_properties(port=9092, controller_port=9093, log_dir=Path("/d"),
                                     advertised_port=19092, internal_port=9094))
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,INTERNAL://127.0.0.1:9094")
    assert props["inter.broker.listener.name"] == "INTERNAL"
    with pytest.raises(ValueError, match="internal port"):
        server_properties(port=9092, controller_port=9093, log_dir=Path("/d"),
                          advertised_port=19092)
