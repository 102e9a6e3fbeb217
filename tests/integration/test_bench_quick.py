"""The benchmark suite works from a checkout with one command: `python -m bench --quick` runs
every section and writes its report and plots. A smoke test — it never judges a timing.
Soak (`pytest -m soak`): its minute went to the cluster failover test in the suite's budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Several minutes, more on a busy machine: beyond the suite's 300 s test timeout.
pytestmark = [pytest.mark.kafka, pytest.mark.soak, pytest.mark.timeout(900)]


def test_the_quick_suite_runs_every_section_and_writes_its_report(kafka_bootstrap, tmp_path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=880,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["quick"] is True
    assert report["limits"]["broker_produce_4kb"]["records_per_s"] > 0
    assert report["limits"]["bare_sink"]["cpu_ms_per_message"] > 0
    assert [r["concurrency"] for r in report["mail_path"]["ingest"]] == [1, 10]
    end_to_end = report["mail_path"]["end_to_end"]
    assert [r["concurrency"] for r in end_to_end] == [1, 10]
    assert end_to_end[-1]["delivered"] >= 50 + 2 * 50  # the warm-up, then 50 per level
    assert all(r["cpu_ms_per_message"]["ingest"] > 0 for r in end_to_end)
    # Postfix ran first, beside the bare sink, with the same load per level.
    peer = report["postfix_peer"]
    assert peer["postfix_version"].startswith("3.")
    assert [r["messages"] for r in peer["postfix"]] == [50, 50]
    against = report["against_postfix"]
    assert [r["concurrency"] for r in against] == [1, 10]
    for level in against:
        assert level["katagate_to_postfix"] > 0
        assert level["postfix"]["cpu_ms_per_message_groups"]["postfix"] > 0
        assert {"katagate", "broker", "emulator", "sink"} <= set(
            level["katagate"]["cpu_ms_per_message_groups"])
        assert level["bare_sink"]["end_to_end_msgs_per_s"] > 0
    quarantine = report["mail_path"]["quarantine"]
    # The section ran and reported (its figures are the full run's business, not a smoke test's).
    assert quarantine["held_messages"] == 100
    assert quarantine["drained"] >= 100
    assert quarantine["delivered_before_the_verdicts"] >= 0
    assert quarantine["central_node_requests_per_poll"] is not None
    assert {"ingest", "scanner", "decider", "projector"} <= set(
        report["mail_path"]["memory"]["after_quarantine"])
    marks = report["mail_path"]["memory_marks"]
    assert [m["messages"] for m in marks["marks"]] == [20, 40]
    assert all(m["delivered"] >= m["messages"] for m in marks["marks"])
    assert "scanner" in marks["growth_percent"]
    assert all("p99_added_ms" in r for r in report["mail_path"]["ingest"])
    assert {"warm_up", "end_to_end", "ingest", "quarantine", "memory_marks", "replay",
            "postfix_peer", "budget"} <= set(
        report["mail_path"]["section_seconds"])
    assert report["replay"]["events"] > 500
    for plot in ("ingest.png", "peer.png", "cpu.png"):
        assert (tmp_path / plot).stat().st_size > 10_000
    text = (tmp_path / "report.md").read_text()
    assert "## Replay" in text
    assert "## Against Postfix" in text
    budget = report["mail_path"]["budget"]
    assert budget["requests_per_msg"]["Produce"] > 0
    assert report["mail_path"]["warm_up"]["broker_jit_ms_per_msg_by_round"]
    assert budget["requests_per_msg"]["EndTxn"] > 0
    assert "## The per-message budget" in text
    assert "| katagate (all of the above) |" in (tmp_path / "scaling.md").read_text()
