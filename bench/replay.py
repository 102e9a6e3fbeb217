"""Replay speed and memory, side by side in one run: `projector replay` (every projection
folded from offset 0) against a bare confluent-kafka consumer reading the same topics, and the
bare consumer plus event decoding. Each reader runs in a fresh process so its memory is its
own; the replay's resident memory is sampled as it goes (bounded means: flat after the first
quarter, not growing with the log), and then the timelines are written out (streamed).

    python -m bench.replay [--messages N]     # about 9.8 events per message; 102,000 → 1M

Writes bench/results/replay-<time>/report.json and report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import machine
from bench.results import run_folder, write_report
from katagate.eventlog.broker import LocalBroker, free_port
from katagate.eventlog.clients import new_admin, new_reader
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames, ensure_topics

ROOT = Path(__file__).resolve().parent.parent


def feed(kafka: KafkaSettings, messages: int) -> int:
    """The test flows (every scenario, ledger events mirrored), a chunk at a time."""
    from tests.unit.test_projector_flows import control_flow, message_flow

    names = TopicNames(kafka.topic_prefix)
    topic = {"mail": names.mail, "quarantine": names.quarantine, "control": names.control}
    producer = TransactionalProducer(kafka, f"{kafka.topic_prefix}-bench-feed")
    total = 0
    chunks = [control_flow()] + [
        [pair for i in range(start, min(start + 2000, messages)) for pair in message_flow(i)]
        for start in range(0, messages, 2000)]
    for routed in chunks:
        producer.begin()
        producer.produce(Outgoing.event(topic[kind], event) for kind, event in routed)
        producer.commit()
        total += len(routed)
    producer.close()
    return total


def status_kib(field: str) -> int:
    """VmHWM (peak) or VmRSS (now) of this process (ru_maxrss would carry the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """Resident memory every quarter second, on a thread, while the replay runs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._began = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.samples.append((time.perf_counter() - self._began, status_kib("VmRSS")))

    def stop(self) -> dict[str, float]:
        """RSS (MB) when a quarter, half, three quarters and all of the time had passed."""
        self._stop.set()
        self._thread.join()
        if not self.samples:
            return {}
        end = self.samples[-1][0]
        return {f"rss_mb_at_{int(q * 100)}pct": round(next(
            kib for t, kib in self.samples if t >= q * end) / 1024, 1)
            for q in (0.25, 0.5, 0.75, 1.0)}


def child(mode: str, servers: str, prefix: str) -> dict[str, Any]:
    """One reader, in this (fresh) process."""
    from confluent_kafka import TopicPartition

    from katagate.projector.replay import replay, write_outputs
    from katagate.projector.source import projected_topics
    from katagate.schemas import decode_event

    kafka = KafkaSettings(bootstrap_servers=servers, topic_prefix=prefix)
    began = time.perf_counter()
    extra: dict[str, Any] = {}
    if mode == "replay":
        sampler = RssSampler()
        result = replay(kafka)
        extra = sampler.stop()
        count = result.records
        seconds = time.perf_counter() - began
        with tempfile.TemporaryDirectory() as out:
            wrote = time.perf_counter()
            write_outputs(result, Path(out))
            extra["write_outputs_s"] = round(time.perf_counter() - wrote, 2)
            extra["timelines_mb"] = round((Path(out) / "timelines.jsonl").stat().st_size / 1e6)
        extra["rss_mb_after_writing"] = round(status_kib("VmRSS") / 1024, 1)
        result.projections.close()
    else:
        consumer = new_reader(kafka, "bare", **{"enable.partition.eof": True})
        partitions = [TopicPartition(t, p, 0) for t in projected_topics(kafka)
                      for p in consumer.list_topics(t, timeout=30).topics[t].partitions]
        consumer.assign(partitions)
        left, count = len(partitions), 0
        while left:
            for message in consumer.consume(5000, 1.0):
                if message.error():
                    left -= 1  # partition EOF
                    continue
                count += 1
                if mode == "decode":
                    decode_event(message.value() or b"")
        consumer.close()
        seconds = time.perf_counter() - began
    rss_mb = status_kib("VmHWM") / 1024
    return {"events": count, "seconds": round(seconds, 2),
            "events_per_s": round(count / seconds), "peak_rss_mb": round(rss_mb, 1), **extra}


def run_child(mode: str, servers: str, prefix: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.replay", "--child", mode, "--servers",
                          servers, "--prefix", prefix], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=3600)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(messages: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-replay-"))
    broker = LocalBroker(folder)
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or ""
    try:
        if not servers:
            servers = broker.start(port=free_port()).bootstrap_servers or ""
        kafka = KafkaSettings(bootstrap_servers=servers, topic_prefix=f"r{uuid.uuid4().hex[:8]}")

        ensure_topics(new_admin(KafkaSettings(bootstrap_servers=servers)), kafka)
        events = feed(kafka, messages)
        report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                                  "machine": machine(), "messages": messages,
                                  "events": events}
        # Interleaved, the baseline first and last, to show drift on a shared machine.
        for mode in ("bare", "decode", "replay", "bare_again"):
            report[mode] = run_child(mode.removesuffix("_again"), servers, kafka.topic_prefix)
            print(mode, report[mode], flush=True)
        base = (report["bare"]["events_per_s"] + report["bare_again"]["events_per_s"]) / 2
        report["replay_ratio_to_bare"] = round(report["replay"]["events_per_s"] / base, 3)
        report["decode_ratio_to_bare"] = round(report["decode"]["events_per_s"] / base, 3)
        return report
    finally:
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--child", choices=("bare", "decode", "replay"))
    parser.add_argument("--servers")
    parser.add_argument("--prefix")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.servers, args.prefix)))
        return 0
    report = measure(args.messages)
    events = report["events"]
    out = run_folder("replay")
    rows = ["| reader | events/s | peak RSS MB |", "|---|---|---|"]
    rows += [f"| {m} | {report[m]['events_per_s']} | {report[m]['peak_rss_mb']} |"
             for m in ("bare", "decode", "replay", "bare_again")]
    rows.append(f"\nreplay / bare = {report['replay_ratio_to_bare']} over {events} events")
    memory = {k: v for k, v in report["replay"].items() if k.startswith(("rss", "write", "time"))}
    rows.append(f"\nreplay memory and output: {json.dumps(memory)}")
    write_report(out, report, f"Replay benchmark, {report['when']}",
                 f"{json.dumps(report['machine'])}\n\n" + "\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
