"""`katagate up` supervising its children, as processes on the shared broker (a fresh topic
namespace), in two runs on one state folder:

1. a first start without --accept-sensor (timed); the sensor accepted by the emulator's
   command; the decider killed with SIGKILL: `up` says so, starts it again, counts it on its
   own /metrics, and mail sent afterwards reaches the sink; `katagate down` stops it tier by
   tier with nothing killed;
2. a second start with --accept-sensor: the sensor is already accepted, so `up` says so and
   is up in about the time of the first start (not after the old 120 s wait); the audit
   checkpointer cannot bind its metrics port (a socket of this test holds it), so it fails
   at each start: after [up] restart_limit = 2, `up` stops, naming it and its log, exit 1.
"""

from __future__ import annotations

import os
import queue
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from katagate.demo_sink.store import read_messages
from katagate.eventlog.broker import free_port, free_port_run
from katagate.kata_emulator.store import Store
from tests.conftest import ensure_namespace
from tests.e2e.up_env import up_env
from tests.integration.kata_harness import ROOT, wait_for

pytestmark = pytest.mark.kafka


class UpRun:
    """`katagate up` in a subprocess; its output lines, and when each came."""

    def __init__(self, config: Path, env: dict[str, str], log: Path, *extra: str) -> None:
        self.started = time.monotonic()
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "katagate", "up", "--config", str(config), *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        threading.Thread(target=self._read, args=(log,), daemon=True).start()

    def _read(self, log: Path) -> None:
        assert self.process.stdout is not None
        with log.open("a") as out:
            for line in self.process.stdout:
                out.write(line)
                out.flush()
                self.lines.put(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"`katagate up` printed no {prefix!r} line; it said: {self.seen}")

    def child_pid(self, name: str) -> int:
        """The pid of `up`'s own child running `katagate <name> run`."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.process.pid and name.encode() in argv and b"run" in argv:
                return int(entry.name)
        raise AssertionError(f"no {name} child of `katagate up` {self.process.pid}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=30)


def metric(port: int, sample: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
    return None


def send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("alice@example.org", ["bob@example.net"],
                        f"From: alice@example.org\r\nTo: bob@example.net\r\n"
                        f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def test_up_restarts_a_killed_stage_and_gives_up_on_one_that_keeps_failing(
        kafka_bootstrap, tmp_path):
    kafka = ensure_namespace(kafka_bootstrap)
    state = tmp_path / "state"
    smtp_port, base = free_port(), free_port_run(7)
    config = tmp_path / "katagate.toml"
    config.write_text(f"""
[paths]
state_dir = "{state}"
[ingest]
host = "127.0.0.1"
port = {smtp_port}
relay_domains = ["example.net"]
[decider]
next_hop_host = "127.0.0.1"
next_hop_port = {(sink_port := free_port())}
helo_name = "gw.example.net"
retry_first_s = 0.5
[scanner]
recheck_s = 0.3
[kata]
central_node = "emulator"
poll_interval_s = 1
[emulator]
port = 0
[projector]
port = {free_port()}
[console]
port = {free_port()}
[metrics]
base_port = {base}
[sink]
port = {sink_port}
""")
    env = up_env(kafka, tmp_path)

    # 1. A first start, without --accept-sensor
    first = UpRun(config, env, tmp_path / "up-1.log")
    try:
        first.wait_line("katagate is up", 120)
        first_start_s = time.monotonic() - first.started
        assert f"metrics=ingest:127.0.0.1:{base}," in "\n".join(first.seen)
        assert any(line.endswith(f",up:127.0.0.1:{base + 6}") for line in first.seen)
        own_id = wait_for(lambda: (state / "sensor" / "sensor.id").exists()
                          and (state / "sensor" / "sensor.id").read_text().strip(), 30,
                          "the scanner's sensor id")
        wait_for(lambda: any(s.sensor_id == own_id for s in Store(state / "kata").sensors()),
                 60, "the sensor's integration request")
        subprocess.run([sys.executable, "-m", "katagate.kata_emulator", "sensors", "accept",
                        "--state", str(state / "kata"), own_id], cwd=ROOT, check=True,
                       capture_output=True, timeout=60)
        samples = 'katagate_up_child_restarts_total{child="decider"}'
        assert metric(base + 6, samples) == 0

        # When the decider is killed
        os.kill(first.child_pid("decider"), 9)
        # Then `up` says so in one line, starts it again and counts it
        said = first.wait_line("decider stopped", 30)
        assert said == (f"decider stopped (signal SIGKILL); restarting in 1 s; see "
                        f"{state / 'logs' / 'decider.log'}")
        wait_for(lambda: metric(base + 6, samples) == 1, 30, "the restart counted")
        assert first.process.poll() is None
        # And mail sent afterwards is delivered to the sink
        send(smtp_port, "after the restart")
        wait_for(lambda: [m for m in read_messages(state / "sink")
                          if b"after the restart" in m.data], 90, "the mail in the sink")

        # `katagate down` waits for the tiers, and nothing needs killing
        down = subprocess.run([sys.executable, "-m", "katagate", "down", "--config",
                               str(config)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
        assert down.stdout.startswith("waiting up to 170 s for katagate (pid ")
        assert down.stdout.endswith("katagate stopped\n")
        assert first.process.wait(timeout=30) == 0
        rest = first.seen + list(first.lines.queue)
        assert not [line for line in rest if "did not stop" in line], rest
        assert len(read_messages(state / "sink")) == 1
    finally:
        first.kill()

    # 2. A second start, with --accept-sensor, and the audit checkpointer's port held
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    env.update(KATAGATE_AUDIT_METRICS_PORT=str(held.getsockname()[1]),
               KATAGATE_UP_RESTART_LIMIT="2")
    second = UpRun(config, env, tmp_path / "up-2.log", "--accept-sensor")
    try:
        # Then the accepted sensor is said and `up` goes on at once
        line = second.wait_line("sensor ", 120)
        fingerprint = Store(state / "kata").sensor(own_id).fingerprint
        assert line == f"sensor {own_id} already accepted (key {fingerprint})"
        second.wait_line("katagate is up", 60)
        second_start_s = time.monotonic() - second.started
        print(f"first start {first_start_s:.1f} s; second with --accept-sensor "
              f"{second_start_s:.1f} s")
        assert second_start_s < first_start_s + 20
        # And the audit checkpointer, failing at each start, is restarted twice, then given up
        audit_log = state / "logs" / "audit.log"
        assert second.wait_line("audit stopped", 60) == (
            f"audit stopped (exit code 1); restarting in 1 s; see {audit_log}")
        assert second.wait_line("audit stopped", 60).endswith(f"restarting in 2 s; see {audit_log}")
        assert second.wait_line("audit failed", 60) == (
            f"audit failed 3 times within 300 s (last: exit code 1); see {audit_log}; "
            "stopping katagate")
        assert second.process.wait(timeout=120) == 1
        assert "Address already in use" in audit_log.read_text()
    finally:
        second.kill()
        held.close()
