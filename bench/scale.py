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
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.mailpath import ROOT, delivered
from bench.smtp_load import send_load

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAGES = ("ingest", "scanner", "decider", "projector", "console", "audit")


def _children(parent: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        words = [a.decode(errors="replace") for a in args]
        stage = next((s for s in STAGES if s in words), None)
        if stage is None and "kata_emulator" in words:
            stage = "emulator"
        if stage is None and any("java" in w for w in words[:1]):
            stage = "broker"
        if stage is None and "sink" in words:
            stage = "sink"
        if stage is not None:
            found[int(entry.name)] = stage
    return found


def up_pid(folder: Path) -> int:
    config = str(folder / "katagate.toml")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if config.encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError("katagate up is not running")


def usage(parent: int) -> dict[str, dict[str, float]]:
    """Resident memory (MB) and CPU seconds so far, per stage."""
    out: dict[str, dict[str, float]] = {}
    for pid, stage in _children(parent).items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss_kib = next(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:"))
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        out[stage] = {"rss_mb": round(rss_kib / 1024, 1), "cpu_s": round(cpu, 2)}
    return out


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


def _in_quarantine(projector_port: int) -> int:
    body = urllib.request.urlopen(
        f"http://127.0.0.1:{projector_port}/state/quarantine", timeout=10).read()
    return int(json.loads(body)["messages_in_use"])


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
    while time.monotonic() - emptied < 600 and _in_quarantine(ports["projector"]) > 0:
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
