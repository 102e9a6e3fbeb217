"""`katagate ingest run` with processes = 2 on a real broker and real sockets: two SMTP workers
on one port, each writing mail, answered for as one stage (metrics, probes), a worker killed
and started again, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from katagate.eventlog.settings import KafkaSettings
from katagate.ingest.worker_metrics import get
from tests.integration.test_ingest_harness import (
    RELAY_DOMAIN,
    IngestProcess,
    first_line,
    received,
    send,
)

pytestmark = pytest.mark.kafka


def workers_of(pid: int) -> dict[int, int]:
    """worker index -> pid, of the live processes whose parent is `pid`."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if parent == pid and b"--worker" in argv:
            found[int(argv[argv.index(b"--worker") + 1])] = int(entry.name)
    return found


def mail(address: tuple[str, int], count: int, tag: str) -> None:
    for n in range(count):  # a connection each: the kernel spreads connections, not messages
        code, reply = send(address, "alice@example.org", [f"bob@{RELAY_DOMAIN}"],
                           f"Subject: {tag} {n}\r\n\r\nbody\r\n".encode())
        assert code == 250, reply


def replaced(supervisor: int, index: int, pid: int, timeout_s: float = 30) -> None:
    """Wait until worker `index` runs as another process than `pid`."""
    deadline = time.monotonic() + timeout_s
    while workers_of(supervisor).get(index) in (None, pid):
        assert time.monotonic() < deadline, f"worker {index} (pid {pid}) was not replaced"
        time.sleep(0.2)


def ready(address: tuple[str, int], timeout_s: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = get(address, "/readyz")
        if status == 200 or time.monotonic() > deadline:
            answer: dict[str, object] = json.loads(body)
            assert status == 200, answer
            return answer
        time.sleep(0.2)


def test_two_workers_share_the_port_and_answer_as_one_stage(
        make_kafka_settings, tmp_path: Path) -> None:
    kafka: KafkaSettings = make_kafka_settings()
    with IngestProcess(kafka, tmp_path / "ingest.log", processes=2, metrics_port=0,
                       instance_id="mx1", health_stall_s=5,
                       max_sessions_per_client=3) as ingest:
        metrics = ingest.listening["ingest-metrics"]
        started = workers_of(ingest.process.pid)
        assert sorted(started) == [0, 1]
        assert set(ready(metrics)["checks"]) == {"workers", "worker-0", "worker-1"}  # type: ignore[arg-type]

        # Mail over 24 connections: both workers take some, each under its own name
        mail(ingest.address, 24, "first")
        events = received(kafka)
        assert len(events) == 24
        assert {e.producer.instance for e in events} == {"mx1-p0", "mx1-p1"}

        # The stage's metrics: each worker's series, labelled
        status, page = get(metrics, "/metrics")
        assert status == 200
        accepted = {line.split("{")[1].split("}")[0]: float(line.split()[-1])
                    for line in page.decode().splitlines()
                    if line.startswith("katagate_ingest_messages_accepted_total{")}
        assert set(accepted) == {'worker="0"', 'worker="1"'}
        assert sum(accepted.values()) == 24
        assert min(accepted.values()) > 0

        # The per-client cap is the stage's, whichever worker each connection reaches
        held = [socket.create_connection(ingest.address, timeout=10) for _ in range(3)]
        try:
            assert all(first_line(sock).startswith(b"220 ") for sock in held)
            for _ in range(3):  # each worker alone would have room for three more
                with socket.create_connection(ingest.address, timeout=10) as more:
                    assert first_line(more).startswith(b"421 4.7.0 Too many connections from")
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.5)  # the sessions' ends counted
        mail(ingest.address, 2, "after the cap")

        # A worker killed: the connections the kernel gives its listener meanwhile wait for the
        # worker started in its place, and every message sent at once is accepted
        os.kill(started[0], signal.SIGKILL)
        mail(ingest.address, 8, "second")
        assert len(received(kafka)) == 34
        replaced(ingest.process.pid, 0, started[0])
        time.sleep(1.5)  # the supervisor's round: /readyz follows the new worker's
        ready(metrics)

        # A worker that stops answering (stopped: its listener silent) is killed after
        # health_stall_s (5 s here) and started again
        stopped = workers_of(ingest.process.pid)[1]
        os.kill(stopped, signal.SIGSTOP)
        replaced(ingest.process.pid, 1, stopped)
        ready(metrics)
        mail(ingest.address, 4, "third")
        assert len(received(kafka)) == 38
        status, page = get(metrics, "/metrics")
        assert b"katagate_ingest_worker_restarts_total 2.0" in page

        # A clean stop: SIGTERM drains every worker, and none is left
        workers = workers_of(ingest.process.pid)
        ingest.process.send_signal(signal.SIGTERM)
        assert ingest.process.wait(30) == 0
        for pid in workers.values():
            assert not Path(f"/proc/{pid}").exists() or \
                "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    # The workers share the stage's stderr: each line says whose it is
    said = (tmp_path / "ingest.log").read_text()
    for worker in (0, 1):
        assert f"[worker {worker}] " in said, said[-2000:]
    mail_lines = [line for line in said.splitlines() if " katagate.maillog " in line]
    assert len(mail_lines) >= 38
    for line in mail_lines:  # only the workers take mail
        assert " katagate.maillog [worker " in line, line
