"""Ingest's worker processes without a broker: what each worker is given, the workers' metrics
merged, the port held for them, a worker's watch on its supervisor."""

from __future__ import annotations

import errno
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from katagate.ingest.settings import IngestSettings
from katagate.ingest.worker_metrics import fetch_each, merged
from katagate.ingest.worker_plan import MiB, share, worker_env, worker_instance
from katagate.ingest.workers import listeners


def test_given_three_workers_then_each_has_a_third_of_what_it_holds_rounded_up_and_a_name(
        ) -> None:
    settings = IngestSettings(processes=3, instance_id="mx1", max_sessions=1000,
                              max_sessions_per_client=50, data_budget_bytes=512 * MiB,
                              verify_concurrency=20, verify_cache_size=100_000)
    env = worker_env(settings, 2, "127.0.0.1", 2600)
    assert env["KATAGATE_INGEST_INSTANCE_ID"] == "mx1-p2"
    assert (env["KATAGATE_INGEST_HOST"], env["KATAGATE_INGEST_PORT"]) == ("127.0.0.1", "2600")
    assert env["KATAGATE_INGEST_VERIFY_CONCURRENCY"] == "7"
    assert env["KATAGATE_INGEST_VERIFY_CACHE_SIZE"] == "33334"
    assert int(env["KATAGATE_INGEST_DATA_BUDGET_BYTES"]) * 3 >= 512 * MiB
    # The session caps are the stage's, counted across the workers (shared_counts.py)
    assert "KATAGATE_INGEST_MAX_SESSIONS" not in env
    assert "KATAGATE_INGEST_MAX_SESSIONS_PER_CLIENT" not in env
    # A worker's metrics are loopback on a free port, and it starts no workers of its own
    assert env["KATAGATE_INGEST_METRICS_HOST"] == "127.0.0.1"
    assert env["KATAGATE_INGEST_METRICS_PORT"] == "0"
    assert env["KATAGATE_INGEST_PROCESSES"] == "1"


def test_given_a_worker_s_variables_then_they_are_valid_settings(monkeypatch) -> None:
    settings = IngestSettings(processes=8, max_message_bytes=100 * MiB,
                              data_budget_bytes=800 * MiB, verify_cache_size=500)
    for name, value in worker_env(settings, 7, "::1", 25).items():
        monkeypatch.setenv(name, value)
    worker = IngestSettings()
    assert worker.data_budget_bytes == 100 * MiB
    assert worker.verify_cache_size == 100  # its lower bound
    assert (worker.host, worker.port, worker.processes) == ("::1", 25, 1)


def test_given_a_data_budget_too_small_to_divide_then_the_settings_are_refused_naming_it(
        ) -> None:
    with pytest.raises(ValueError, match="processes") as refused:
        IngestSettings(processes=8, max_message_bytes=100 * MiB, data_budget_bytes=128 * MiB)
    assert "data_budget_bytes" in str(refused.value)
    IngestSettings(processes=1, max_message_bytes=100 * MiB, data_budget_bytes=128 * MiB)


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


def test_given_two_workers_listeners_then_both_listen_on_one_port_and_no_other_binds_it(
        ) -> None:
    made = listeners("127.0.0.1", 0, 2)
    try:
        ports = {group[0].getsockname()[1] for group in made}
        assert len(made) == 2
        assert len(ports) == 1
        port = ports.pop()
        # Listening from the start: a connection waits for its worker in the backlog
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError, match="in use") as refused:
                other.bind(("127.0.0.1", port))
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        for sock in (s for group in made for s in group):
            sock.close()


SUPERVISOR = """
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(worker.pid, flush=True)
worker.wait()
"""
WORKER = """
import os, signal, threading
from katagate.ingest.workers import follow_supervisor
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())  # as every stage's process does
follow_supervisor(stop, os.getppid())
print("following", flush=True)
print("stopped" if stop.wait(30) else "still serving", flush=True)
"""


def test_given_its_supervisor_killed_then_a_worker_stops_within_seconds() -> None:
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, WORKER],
                                  stdout=subprocess.PIPE, text=True)
    assert supervisor.stdout is not None
    worker = int(supervisor.stdout.readline())
    assert supervisor.stdout.readline().strip() == "following"
    supervisor.kill()  # SIGKILL: no chance to stop its worker itself
    supervisor.wait()
    began = time.monotonic()
    assert supervisor.stdout.readline().strip() == "stopped"
    assert time.monotonic() - began < 5
    for _ in range(100):
        if not alive(worker):
            break
        time.sleep(0.05)
    assert not alive(worker)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_given_a_worker_option_without_its_supervisor_then_it_is_refused() -> None:
    result = subprocess.run([sys.executable, "-m", "katagate", "ingest", "run", "--worker", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--supervisor, --listen-fds and --sessions-fd" in result.stderr


def test_given_processes_out_of_range_then_the_command_names_the_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "katagate", "ingest", "run"], capture_output=True, text=True,
        env={**os.environ, "KATAGATE_INGEST_PROCESSES": "65"}, timeout=60)
    assert result.returncode == 2
    assert "processes (KATAGATE_INGEST_PROCESSES)" in result.stderr
    assert "<= 64" in result.stderr


def test_given_a_worker_label_of_its_own_or_a_text_that_does_not_parse_then_merged_keeps_order(
        ) -> None:
    text = ('# HELP katagate_x_total x\n# TYPE katagate_x_total counter\n'
            'katagate_x_total{worker="a"} 2.0\n')
    families = merged({"0": text, "1": "katagate_x_total{worker=\n"})
    samples = [(s.name, s.labels, s.value) for f in families for s in f.samples]
    assert samples == [("katagate_x_total", {"exported_worker": "a", "worker": "0"}, 2.0)]


class _Probe(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f'{{"status": "{self.path.strip("/")}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_given_a_worker_that_hangs_then_both_probes_of_every_worker_cost_one_timeout() -> None:
    answering = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Probe)
    threading.Thread(target=answering.serve_forever, daemon=True).start()
    hung = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        addresses = {"0": answering.server_address[:2], "1": hung.getsockname()[:2]}
        began = time.monotonic()
        answers = fetch_each(addresses, ("/healthz", "/readyz"), 1.0)
        took = time.monotonic() - began
    finally:
        answering.shutdown()
        answering.server_close()
        hung.close()
    assert answers[("0", "/healthz")] == (200, b'{"status": "healthz"}')
    assert answers[("0", "/readyz")] == (200, b'{"status": "readyz"}')
    for path in ("/healthz", "/readyz"):
        assert str(answers[("1", path)]).startswith("not answering: ")
    assert took < 1.8  # at once: one timeout, not one per probe
    assert fetch_each({}, ("/healthz",)) == {}
