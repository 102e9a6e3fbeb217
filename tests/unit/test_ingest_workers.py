"""Ingest's worker processes without a broker: what each worker is given, the workers' metrics
merged, the port held for them, a worker's watch on its supervisor."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from katagate.ingest.settings import IngestSettings
from katagate.ingest.worker_metrics import merged
from katagate.ingest.worker_plan import MiB, share, worker_env, worker_instance
from katagate.ingest.workers import reserve, watch_parent


def test_given_three_workers_then_each_has_a_third_of_the_caps_rounded_up_and_a_name() -> None:
    settings = IngestSettings(processes=3, instance_id="mx1", max_sessions=1000,
                              max_sessions_per_client=50, data_budget_bytes=512 * MiB,
                              verify_concurrency=20)
    env = worker_env(settings, 2, "127.0.0.1", 2600)
    assert env["KATAGATE_INGEST_INSTANCE_ID"] == "mx1-p2"
    assert (env["KATAGATE_INGEST_HOST"], env["KATAGATE_INGEST_PORT"]) == ("127.0.0.1", "2600")
    assert env["KATAGATE_INGEST_MAX_SESSIONS"] == "334"
    assert env["KATAGATE_INGEST_MAX_SESSIONS_PER_CLIENT"] == "17"
    assert env["KATAGATE_INGEST_VERIFY_CONCURRENCY"] == "7"
    assert int(env["KATAGATE_INGEST_DATA_BUDGET_BYTES"]) * 3 >= 512 * MiB
    # A worker's metrics are loopback on a free port, and it starts no workers of its own
    assert env["KATAGATE_INGEST_METRICS_HOST"] == "127.0.0.1"
    assert env["KATAGATE_INGEST_METRICS_PORT"] == "0"
    assert env["KATAGATE_INGEST_PROCESSES"] == "1"


def test_given_a_worker_s_variables_then_they_are_valid_settings(monkeypatch) -> None:
    settings = IngestSettings(processes=8, max_message_bytes=100 * MiB,
                              data_budget_bytes=128 * MiB, max_sessions=5,
                              max_sessions_per_client=1)
    for name, value in worker_env(settings, 7, "::1", 25).items():
        monkeypatch.setenv(name, value)
    worker = IngestSettings()
    # A share is never under the largest message allowed, nor under one session
    assert worker.data_budget_bytes == 100 * MiB
    assert (worker.max_sessions, worker.max_sessions_per_client) == (1, 1)
    assert (worker.host, worker.port, worker.processes) == ("::1", 25, 1)


def test_given_an_instance_id_of_the_longest_then_a_worker_s_still_fits_and_differs() -> None:
    longest = "a" * 100
    names = {worker_instance(longest, i) for i in range(64)}
    assert len(names) == 64
    assert all(len(n) == 100 and n.startswith("a" * 96) for n in names)
    IngestSettings(instance_id=worker_instance(longest, 63))
    assert [share(10, 3), share(1, 64), share(64, 64)] == [4, 1, 1]


def exposition(accepted: float, held: float) -> str:
    registry = CollectorRegistry()
    Counter("katagate_ingest_messages_accepted", "accepted", registry=registry).inc(accepted)
    Counter("katagate_ingest_refusals", "refused", ["reason"], registry=registry
            ).labels("draining").inc()
    Gauge("katagate_ingest_data_held_bytes", "held", registry=registry).set(held)
    Histogram("katagate_ingest_commit_seconds", "commit", buckets=(0.1, 1.0),
              registry=registry).observe(0.5)
    return generate_latest(registry).decode()


def test_given_two_workers_texts_then_each_series_is_labelled_and_exposed_again() -> None:
    class Merged:
        def collect(self):  # type: ignore[no-untyped-def]
            return merged({"0": exposition(3, 10), "1": exposition(4, 20)})

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("katagate_ingest_messages_accepted_total", (("worker", "0"),))] == 3
    assert samples[("katagate_ingest_messages_accepted_total", (("worker", "1"),))] == 4
    assert samples[("katagate_ingest_refusals_total",
                    (("reason", "draining"), ("worker", "1")))] == 1
    assert samples[("katagate_ingest_data_held_bytes", (("worker", "1"),))] == 20
    assert samples[("katagate_ingest_commit_seconds_bucket",
                    (("le", "1.0"), ("worker", "0")))] == 1
    assert samples[("katagate_ingest_commit_seconds_count", (("worker", "1"),))] == 1
    # Each family once, with its type; the workers' start times are not series
    assert text.count("# TYPE katagate_ingest_messages_accepted_total counter") == 1
    assert "_created" not in text


def test_given_the_port_held_then_it_takes_no_connection_and_only_a_reuseport_worker_joins(
        ) -> None:
    held = reserve("127.0.0.1", 0)
    try:
        port = held[0].getsockname()[1]
        assert port != 0
        with pytest.raises(ConnectionRefusedError):  # bound, not listening
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with socket.socket() as other, pytest.raises(OSError, match="in use") as refused:
            other.bind(("127.0.0.1", port))
        assert refused.value.errno == errno.EADDRINUSE
        with socket.socket() as worker:
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        for sock in held:
            sock.close()


def test_given_its_supervisor_gone_then_a_worker_stops() -> None:
    stop = threading.Event()
    watch_parent(stop, os.getppid() + 1_000_000)  # not this process's parent: gone
    assert stop.wait(5)
    stop = threading.Event()
    thread = watch_parent(stop, os.getppid())
    assert not stop.wait(1.5)
    stop.set()
    thread.join(5)


def test_given_processes_out_of_range_then_the_command_names_the_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "katagate", "ingest", "run"], capture_output=True, text=True,
        env={**os.environ, "KATAGATE_INGEST_PROCESSES": "65"}, timeout=60)
    assert result.returncode == 2
    assert "processes (KATAGATE_INGEST_PROCESSES)" in result.stderr
    assert "<= 64" in result.stderr
