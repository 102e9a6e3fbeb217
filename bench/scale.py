"""The quarantine at scale and what each stage costs, on a running gateway (`katagate up`):

- every stage's resident memory and CPU, read from /proc (the children of `katagate up`);
- N messages held in the KATA Quarantine (the emulator keeps every scan processing: a latency
  fault), and while they wait: CPU and memory per stage, and the requests the scanner sends
  the Central Node per poll interval (one batched poll, not one per message);
- then every held verdict arrives at once (`kata_emulator scans finish`): the time until all
  of them are delivered.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.mailpath import ROOT, delivered
from bench.processes import up_pid, usage
from bench.smtp_load import send_load
from katagate.projector.guard import token_file


def _scanner_counts(metrics_port: int) -> tuple[float, float, float]:
    """(state polls, submissions, every Central Node reply) counted by the scanner so far."""
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    polls = submissions = replies = 0.0
    for line in text.splitlines():
        if line.startswith("katagate_kata_polls_total{"):
            polls += float(line.split()[-1])
        elif line.startswith("katagate_kata_submissions_total{"):
            submissions += float(line.split()[-1])
        elif line.startswith("katagate_kata_api_responses_total{"):
            replies += float(line.split()[-1])
    return polls, submissions, replies


def _in_quarantine(folder: Path, projector_port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{projector_port}/state/quarantine",
        headers={"Authorization": f"Bearer {_read_token(folder)}"})
    body = urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - http
    return int(json.loads(body)["messages_in_use"])


def _read_token(folder: Path) -> str:
    """The benchmark's read token for the projector `katagate up` runs (made once, kept in a
    0600 file, as `up` gives the console its own)."""
    holder = folder / "bench-projector-token"
    token_file(folder / "state" / "projector" / "tokens.json").ensure_in_file(
        "bench", holder, datetime.now(UTC).isoformat())
    return holder.read_text().strip()


def _emulator(folder: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "kata_emulator", *args, "--state",
                    str(folder / "state" / "kata")], cwd=ROOT, check=True,
                   capture_output=True, timeout=60)


def quarantine_at_scale(folder: Path, ports: dict[str, int], sink_dir: Path, held: int,
                        scanner_metrics_port: int, wait_s: float = 20.0) -> dict[str, Any]:
    parent = up_pid(folder)
    # Start from an empty quarantine: mail of the earlier sections may still be in flight, and
    # its slots would count against the limit (the burst would be denied, not held).
    emptied = time.monotonic()
    while time.monotonic() - emptied < 600 and _in_quarantine(folder, ports["projector"]) > 0:
        time.sleep(1)
    # Every scan stays processing, and the emulator takes them all (its default 100 in
    # processing per sensor would answer 429 and the scanner would retry, not wait).
    _emulator(folder, "faults", "set", "--latency", "3600", "--concurrency-limit", "1000000")
    before_delivered = delivered(sink_dir)
    submitted0 = _scanner_counts(scanner_metrics_port)[1]
    sent = send_load(ports["smtp"], held, 4096, 20)
    # Measure the steady state: every message submitted and waiting, earlier mail delivered.
    settle_began = time.monotonic()
    while time.monotonic() - settle_began < 300:
        if _scanner_counts(scanner_metrics_port)[1] - submitted0 >= sent.messages:
            break
        time.sleep(1)
    settle_s = time.monotonic() - settle_began
    time.sleep(5)
    polls0, _, replies0 = _scanner_counts(scanner_metrics_port)
    usage0 = usage(parent)
    began = time.monotonic()
    time.sleep(wait_s)
    polls1, _, replies1 = _scanner_counts(scanner_metrics_port)
    usage1 = usage(parent)
    seconds = time.monotonic() - began
    waiting_cpu = {stage: round((usage1[stage]["cpu_s"] - usage0[stage]["cpu_s"])
                                / seconds * 100, 1)
                   for stage in usage1 if stage in usage0}
    # Anything delivered before the verdicts come went on without one (denied, or Skipped):
    # then the drain time does not measure what it says.
    early = delivered(sink_dir) - before_delivered
    _emulator(folder, "faults", "reset")
    _emulator(folder, "scans", "finish")
    lifted = time.monotonic()
    target = before_delivered + sent.messages
    while delivered(sink_dir) < target and time.monotonic() - lifted < 600:
        time.sleep(0.2)
    polls = polls1 - polls0
    return {
        "held_messages": sent.messages,
        "ingest_msgs_per_s": round(sent.per_second, 1),
        "all_submitted_after_s": round(settle_s, 1),
        "wait_s": round(seconds, 1),
        "cpu_percent_while_waiting": waiting_cpu,
        "rss_mb_while_waiting": {s: u["rss_mb"] for s, u in usage1.items()},
        "polls_while_waiting": polls,
        "central_node_requests_per_poll": round((replies1 - replies0) / polls, 2)
        if polls else None,
        "delivered_before_the_verdicts": early,
        "drain_s": round(time.monotonic() - lifted, 1),
        "drained": delivered(sink_dir) - before_delivered,
    }


def memory_at_marks(folder: Path, ports: dict[str, int], sink_dir: Path,
                    marks: list[int]) -> dict[str, Any]:
    """Every stage's RSS once each mark of messages went through end to end, and each stage's
    growth from the first mark to the last. Sent in rounds of 2,000 at 10 connections, each
    delivered before the next: steady traffic the gateway keeps up with. (Faster, the backlog
    grows in Kafka, and with it what the stages hold for messages not yet decided.)"""
    parent = up_pid(folder)
    start = delivered(sink_dir)
    sent = 0
    rows = []
    for mark in sorted(marks):
        while sent < mark:
            sent += send_load(ports["smtp"], min(2000, mark - sent), 4096, 10).messages
            began = time.monotonic()
            while delivered(sink_dir) < start + sent and time.monotonic() - began < 600:
                time.sleep(0.5)
        rows.append({"messages": mark, "delivered": delivered(sink_dir) - start,
                     "rss_mb": {s: u["rss_mb"] for s, u in usage(parent).items()}})
    first, last = rows[0]["rss_mb"], rows[-1]["rss_mb"]
    growth = {stage: round((last[stage] / first[stage] - 1) * 100, 1)
              for stage in last if first.get(stage)}
    return {"marks": rows, "growth_percent": growth}
