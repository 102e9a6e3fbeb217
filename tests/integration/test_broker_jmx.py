"""The broker's JMX counters (bench/jmx.py, read by bench/KafkaCounters.java) from the session's
real broker: produce requests, records appended per topic and fetches grow with what a client
does."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from bench import jmx
from katagate.eventlog.topics import TopicNames
from tests.integration.kafka_read import read_all

pytestmark = pytest.mark.kafka

PRODUCE_CALLS = 5


def local_broker_pid(bootstrap: str) -> int:
    port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
    pid = jmx.listening_pid(port)
    if pid is None or b"kafka.Kafka" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        pytest.skip("the session's broker is not a local JVM (Docker, or another host)")
    return pid


def test_produce_and_fetch_counts_grow_with_a_clients_requests(kafka_settings):
    pid = local_broker_pid(kafka_settings.bootstrap_servers)
    topic = TopicNames(kafka_settings.topic_prefix).control
    with jmx.BrokerCounters(pid) as broker:
        before = broker.read()
        producer = Producer({"bootstrap.servers": kafka_settings.bootstrap_servers,
                             "linger.ms": 0})
        for i in range(PRODUCE_CALLS):
            producer.produce(topic, f"record {i}".encode())
            assert producer.flush(10) == 0  # one produce request each
        assert len(read_all(kafka_settings, topic)) == PRODUCE_CALLS
        after = broker.read()

    grew = {api: after["requests"][api] - before["requests"].get(api, 0)
            for api in after["requests"]}
    assert grew["Produce"] >= PRODUCE_CALLS  # other tests' requests may add to it
    assert grew["Fetch"] >= 1
    assert after["MessagesInPerSecByTopic"][topic] - before["MessagesInPerSecByTopic"].get(
        topic, 0) == PRODUCE_CALLS  # the topic is this test's alone
    assert after["MessagesInPerSec"] - before["MessagesInPerSec"] >= PRODUCE_CALLS
    assert after["BytesInPerSec"] > before["BytesInPerSec"]
    assert after["ProcessCpuTimeNs"] > before["ProcessCpuTimeNs"]
