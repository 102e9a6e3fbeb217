"""Where the tests' Kafka comes from, in order: KAFKA_BOOTSTRAP_SERVERS, a Docker engine
(testcontainers), or a real local broker started from the Maven jars for this session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from katagate.eventlog.broker import LocalBroker, free_port

# The one-node transaction settings testcontainers' KafkaContainer does not set by itself.
SINGLE_NODE_ENV = {
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_MIN_INSYNC_REPLICAS": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
}


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, timeout=5, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


@contextmanager
def kafka_cluster() -> Iterator[str]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield servers
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer("apache/kafka:4.1.0").with_kraft()
        for key, value in SINGLE_NODE_ENV.items():
            container = container.with_env(key, value)
        with container:
            yield container.get_bootstrap_server()
        return
    folder = Path(tempfile.mkdtemp(prefix="katagate-test-broker-"))
    broker = LocalBroker(folder)
    try:
        status = broker.start(port=free_port())
        assert status.bootstrap_servers
        yield status.bootstrap_servers
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
