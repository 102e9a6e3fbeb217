"""`katagate broker start|status|stop` on a folder of its own: a second real broker, driven
through the console command as an operator would."""

from __future__ import annotations

import subprocess
import sys

import pytest

from katagate.eventlog.broker import free_port
from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings

pytestmark = pytest.mark.kafka


def katagate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "katagate", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )


def test_start_status_stop_round_trip(tmp_path, kafka_bootstrap):
    # kafka_bootstrap: the session broker has fetched the jars, so this start is a warm one.
    folder = str(tmp_path / "broker")
    port = free_port()
    assert katagate("broker", "status", "--data", folder).returncode == 3

    started = katagate("broker", "start", "--port", str(port), "--data", folder)
    try:
        assert started.returncode == 0, started.stderr
        last_line = started.stdout.strip().splitlines()[-1]
        assert last_line == f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}"
        admin = new_admin(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"))
        assert admin.list_topics(timeout=10).brokers

        status = katagate("broker", "status", "--data", folder)
        assert status.returncode == 0
        assert f"127.0.0.1:{port}" in status.stdout

        again = katagate("broker", "start", "--data", folder)
        assert again.returncode == 0
        assert "already running" in again.stdout
    finally:
        stopped = katagate("broker", "stop", "--data", folder)
    assert stopped.returncode == 0
    assert "broker stopped" in stopped.stdout
    assert katagate("broker", "status", "--data", folder).returncode == 3


def test_a_port_outside_the_range_is_refused_with_its_range(tmp_path):
    result = katagate("broker", "start", "--port", "70000", "--data", str(tmp_path))
    assert result.returncode == 2
    assert "--port must be in 1-65535, not 70000" in result.stderr
