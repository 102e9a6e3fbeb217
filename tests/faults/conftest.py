"""The fault suite's own broker: faults here stop it, fill its disk, or cut it off, so it is
never the session's shared one."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from katagate.eventlog.broker import LocalBroker, free_port
from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import ensure_topics

# `KATAGATE_FAULT_SOAK=1`: the longer runs (more messages, longer outages).
SOAK = os.environ.get("KATAGATE_FAULT_SOAK") == "1"


# The broker's folder is a tmpfs of this size, so that a test can fill its disk.
TMPFS_MB = 256


def mount_tmpfs(folder: Path, size_mb: int) -> bool:
    """A tmpfs on `folder` (root only); False where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                                 str(folder)], capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


class PrivateBroker:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.on_tmpfs = mount_tmpfs(folder, TMPFS_MB)
        self.broker = LocalBroker(folder)
        self.port = free_port()

    def running(self) -> bool:
        return self.broker.status().running

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
        ensure_topics(new_admin(settings), settings)
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
    # The tmpfs goes away with the test: keep the broker's logs for whoever reads a failure.
    shutil.copytree(broker.folder / "logs", tmp_path_factory.mktemp("broker-logs"),
                    dirs_exist_ok=True)
    if broker.on_tmpfs:
        subprocess.run(["umount", "-l", str(broker.folder)], check=False, timeout=30)
