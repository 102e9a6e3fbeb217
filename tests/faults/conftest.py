"""The fault suite's own broker: faults here stop it, fill its disk, or cut it off, so it is
never the session's shared one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from eventlog.broker import LocalBroker, free_port
from eventlog.settings import KafkaSettings
from eventlog.topics import ensure_topics

# `KATAGATE_FAULT_SOAK=1`: the longer runs (more messages, longer outages).
SOAK = os.environ.get("KATAGATE_FAULT_SOAK") == "1"


class PrivateBroker:
    def __init__(self, folder: Path) -> None:
        self.broker = LocalBroker(folder)
        self.port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.broker.start(port=self.port, timeout=180)

    def crash(self) -> None:
        """kill -9: no shutdown hook, no clean close of its logs."""
        pid = self.broker.status().pid
        assert pid is not None, "the broker is not running"
        os.kill(pid, 9)
        while os.path.exists(f"/proc/{pid}") and _state(pid) != "Z":
            pass
        self.broker.stop(timeout=0)  # reaps the pid file

    def namespace(self, prefix: str) -> KafkaSettings:
        settings = KafkaSettings(bootstrap_servers=self.bootstrap, topic_prefix=prefix,
                                 mail_partitions=3, transaction_timeout_ms=10_000,
                                 request_timeout_s=30.0)
        ensure_topics(AdminClient({"bootstrap.servers": self.bootstrap}), settings)
        return settings


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path_factory.mktemp("broker"))
    broker.start()
    yield broker
    broker.broker.stop()
