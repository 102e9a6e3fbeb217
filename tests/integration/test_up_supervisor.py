"""`katagate up`'s supervisor over real child processes (small Python programs, no broker): a
child that dies is restarted and counted, one that keeps dying stops the watch naming it, a
restart that never prints its ready line is a failure; a stop goes tier by tier, and a child
that ignores SIGTERM is killed at its tier's end, said in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from katagate.restart_policy import RestartPolicy
from katagate.stop_tiers import Tier
from katagate.supervisor import Child, Supervisor
from katagate.up_watch import REGISTRY, watch

# Prints its ready line, then exits with code 3 after `sys.argv[1]` seconds.
DIES = "import sys, time; print('ready', flush=True); time.sleep(float(sys.argv[1])); sys.exit(3)"
# Notes when SIGTERM came, takes `sys.argv[2]` seconds to stop, then notes that it stopped.
STOPS = """
import signal, sys, time
note = open(sys.argv[1], "a")
def stop(*_):
    note.write(f"term {time.monotonic()}\\n"); note.flush()
    time.sleep(float(sys.argv[2]))
    note.write(f"gone {time.monotonic()}\\n"); note.flush()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""
DEAF = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', " \
       "flush=True); time.sleep(60)"


def restarts(name: str) -> float:
    return REGISTRY.get_sample_value("katagate_up_child_restarts_total", {"child": name}) or 0


def test_a_child_that_keeps_dying_is_restarted_then_given_up_on(tmp_path):
    supervisor = Supervisor(tmp_path)
    said: list[str] = []
    log = tmp_path / "flaky.log"
    supervisor.start(Child("flaky", [sys.executable, "-c", DIES, "0.2"], log,
                           ready_prefix="ready"))
    before = restarts("flaky")
    try:
        # When it dies at once each time, with at most 1 failure allowed in the window
        code = watch(supervisor, threading.Event(), RestartPolicy(limit=1, window_s=60),
                     said.append)
    finally:
        supervisor.stop_in_tiers([])
    # Then it was restarted once after 1 s, counted, and the second failure stopped the watch
    assert code == 1
    assert said == [f"flaky stopped (exit code 3); restarting in 1 s; see {log}",
                    f"flaky failed 2 times within 60 s (last: exit code 3); see {log}; "
                    "stopping katagate"]
    assert restarts("flaky") == before + 1


def test_a_restart_that_never_becomes_ready_counts_as_a_failure(tmp_path):
    supervisor = Supervisor(tmp_path)
    said: list[str] = []
    child = supervisor.start(Child("late", [sys.executable, "-c", DIES, "0.2"],
                                   tmp_path / "late.log", ready_prefix="ready"))
    child.ready_prefix = "never printed"  # the next starts print no ready line
    stop = threading.Event()
    try:
        code = watch(supervisor, stop, RestartPolicy(limit=1, window_s=60), said.append)
    finally:
        supervisor.stop_in_tiers([])
    assert code == 1
    assert said[1].startswith("late failed 2 times within 60 s (last: not ready: late exited "
                              "with 3")


def test_a_stop_waits_for_each_tier_before_the_next_and_kills_a_deaf_child(tmp_path):
    supervisor = Supervisor(tmp_path)
    notes = {name: tmp_path / f"{name}.notes" for name in ("ingest", "decider", "sink")}
    for name, takes in (("ingest", "1.0"), ("decider", "0.5"), ("sink", "0")):
        supervisor.start(Child(name, [sys.executable, "-c", STOPS, str(notes[name]), takes],
                               tmp_path / f"{name}.log", ready_prefix="ready"))
    supervisor.start(Child("deaf", [sys.executable, "-c", DEAF], tmp_path / "deaf.log",
                           ready_prefix="ready"))
    said: list[str] = []
    started = time.monotonic()
    supervisor.stop_in_tiers([Tier(("ingest",), 5), Tier(("decider", "deaf"), 2),
                              Tier(("sink",), 5)], said.append)
    took = time.monotonic() - started

    def at(name: str, what: str) -> float:
        lines = Path(notes[name]).read_text().split()
        return float(lines[lines.index(what) + 1])

    # Each tier got SIGTERM only once the one before had gone
    assert at("ingest", "gone") <= at("decider", "term")
    assert at("decider", "gone") <= at("sink", "term")
    # And the deaf child was killed at its tier's end (2 s), said in one line
    assert said == [f"deaf did not stop within 2 s of SIGTERM; killed (SIGKILL); see "
                    f"{tmp_path / 'deaf.log'}"]
    assert at("sink", "term") - at("ingest", "term") >= 2.5  # 1 s ingest, then the 2 s tier
    assert took < 8
    assert all(c.process is not None and c.process.poll() is not None
               for c in supervisor.children)


def test_up_refuses_a_base_port_whose_plus_6_is_taken_naming_it(tmp_path):
    # Given base_port + 6 held by another listener
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    config = tmp_path / "katagate.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
                      f"[metrics]\nbase_port = {port - 6}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KATAGATE_")}
    try:
        # When `katagate up` starts
        done = subprocess.run([sys.executable, "-m", "katagate", "up", "--config", str(config)],
                              env=env, capture_output=True, text=True, timeout=60)
    finally:
        held.close()
    # Then it exits 2 before anything starts, naming the setting and the port
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"katagate up: [metrics] base_port + 6 ({port}), up's own "
                                  "/metrics: cannot listen: ")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state" / "up.pid").exists()
