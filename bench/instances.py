"""One against two instances of every stage, side by side in one run on this machine: the same
broker, the same load, each on a fresh topic namespace.

For each: SMTP in to delivered at the next hop (messages/s), the 250 latency (p50, p99) and the
end-to-end latency (250 to arrival at the next hop, p50, p99), and the CPU seconds each kind of
process spent per message. The emulator gives instant verdicts: what is measured is katagate.

    python -m bench.instances [--messages N] [--concurrency C] [--rounds R]

Rounds alternate 1, 2, 1, 2 ...: the machine is shared, so a ratio from one pair is noisy.
Writes bench/results/instances-<time>/report.json and report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from bench.machine import machine
from bench.smtp_load import send_load
from katagate.demo_sink.store import read_messages
from katagate.eventlog.broker import LocalBroker, free_port
from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def one(bootstrap: str, instances: int, messages: int, concurrency: int, warm_up: int,
        partitions: int) -> dict[str, Any]:
    from tests.faults.harness import Rig  # the same process harness the fault tests use

    folder = Path(tempfile.mkdtemp(prefix=f"katagate-bench-x{instances}-"))
    kafka = KafkaSettings(bootstrap_servers=bootstrap,
                          topic_prefix=f"x{instances}-{int(time.time())}",
                          mail_partitions=partitions, transaction_timeout_ms=10_000)
    ensure_topics(new_admin(KafkaSettings(bootstrap_servers=bootstrap)), kafka)
    rig = Rig(kafka, folder, instances=instances).start()
    sink_dir = rig.sink.folder
    try:
        def arrived() -> int:
            return len(list(sink_dir.glob("*.json")))

        def wait_for_count(count: int, timeout_s: float = 900) -> None:
            deadline = time.monotonic() + timeout_s
            while arrived() < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{arrived()} of {count} delivered")
                time.sleep(0.2)

        warm = send_load(rig.smtp_ports, warm_up, 4096, concurrency)
        wait_for_count(warm.messages)
        before = arrived()
        cpu_before = {name: _cpu_s(stage.process.pid) for name, stage in rig.stages.items()
                      if stage.process is not None}
        began_wall, began = time.time(), time.monotonic()
        load = send_load(rig.smtp_ports, messages, 4096, concurrency)
        wait_for_count(before + load.messages)
        seconds = time.monotonic() - began
        cpu = {name: _cpu_s(stage.process.pid) - cpu_before[name]
               for name, stage in rig.stages.items() if stage.process is not None}
        per_kind: dict[str, float] = {}
        for name, value in cpu.items():
            kind = name.split("-")[0]
            per_kind[kind] = per_kind.get(kind, 0.0) + value
        end_to_end = []
        for stored in read_messages(sink_dir):
            if stored.received_at.timestamp() < began_wall:
                continue
            message_id = BytesHeaderParser().parsebytes(stored.data)["Message-ID"]
            if message_id in load.accepted_at:
                end_to_end.append((stored.received_at.timestamp()
                                   - load.accepted_at[message_id]) * 1000)
        return {
            "instances": instances, "messages": load.messages, "refused": load.refused,
            "seconds": round(seconds, 2),
            "end_to_end_msgs_per_s": round(load.messages / seconds, 1),
            "ingest_msgs_per_s": round(load.per_second, 1),
            "accept_p50_ms": round(statistics.median(load.latencies_ms), 1),
            "accept_p99_ms": round(load.percentile(99), 1),
            "end_to_end_p50_ms": round(_percentile(end_to_end, 50), 1),
            "end_to_end_p99_ms": round(_percentile(end_to_end, 99), 1),
            "cpu_ms_per_message": {k: round(v * 1000 / load.messages, 2)
                                   for k, v in sorted(per_kind.items())},
        }
    finally:
        rig.stop()
        shutil.rmtree(folder, ignore_errors=True)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# 1 against 2 instances of every stage ({report['when']})", "",
             f"Machine: {report['machine']}.", "",
             "| instances | end to end msgs/s | 250 p50 / p99 ms | end-to-end p50 / p99 ms | "
             "CPU ms per message (stages) |", "|---|---|---|---|---|"]
    for run in report["runs"]:
        cpu = ", ".join(f"{k} {v}" for k, v in run["cpu_ms_per_message"].items())
        lines.append(f"| {run['instances']} | {run['end_to_end_msgs_per_s']} | "
                     f"{run['accept_p50_ms']} / {run['accept_p99_ms']} | "
                     f"{run['end_to_end_p50_ms']} / {run['end_to_end_p99_ms']} | {cpu} |")
    lines += ["", f"Throughput ratio 2:1 (mean over rounds): **{report['ratio']}**."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--warm-up", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-broker-"))
    broker = LocalBroker(folder)
    status = broker.start(port=free_port())
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "runs": []}
    try:
        assert status.bootstrap_servers
        for _ in range(args.rounds):
            for instances in (1, 2):
                run = one(status.bootstrap_servers, instances, args.messages,
                          args.concurrency, args.warm_up, args.partitions)
                print(json.dumps(run), flush=True)
                report["runs"].append(run)
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    rates = {n: [r["end_to_end_msgs_per_s"] for r in report["runs"] if r["instances"] == n]
             for n in (1, 2)}
    report["ratio"] = round(statistics.mean(rates[2]) / statistics.mean(rates[1]), 3)
    out = RESULTS / f"instances-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
