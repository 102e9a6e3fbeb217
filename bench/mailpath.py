"""The mail path, measured side by side in one run on this machine:

1. ingest: messages/s and `250` latency of the gateway's SMTP edge (durable in Kafka before 250)
   against a bare aiosmtpd sink receiving the same load from the same generator;
2. end to end: messages/s from SMTP in to delivered at the next hop, with an instant-verdict
   KATA emulator, at each level of connections, with CPU ms per message of every process.

    python -m bench.mailpath [--messages N] [--sizes 4096,51200] [--concurrency 1,10,50]
                             [--e2e-concurrency 1,10,50]

Writes bench/results/mailpath-<time>/report.json and report.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import processes
from bench.machine import machine
from bench.results import run_folder, write_report
from bench.smtp_load import send_load
from katagate.eventlog.broker import free_port, free_port_run

ROOT = Path(__file__).resolve().parent.parent
# The gateway's topics in a benchmark run: bench.mail, bench.quarantine, ...
TOPIC_PREFIX = "bench"


def start_bare_sink() -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.bare_sink", "--port", str(port)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.readline()
    return process, port


def start_gateway(folder: Path, secure: bool = False, ingest_processes: int = 1,
                  ) -> tuple[subprocess.Popen[str], dict[str, int], Path]:
    """`katagate up` on free ports (with `secure`: SASL_SSL, ACLs, a principal per stage;
    `ingest_processes`: ingest's SMTP workers)."""
    ports = write_config(folder, ingest_processes)
    return start_up(folder, secure), ports, folder / "state" / "sink"


def write_config(folder: Path, ingest_processes: int = 1) -> dict[str, int]:
    """`folder`/katagate.toml: the whole gateway on free ports, state in `folder`/state."""
    # One run of distinct ports: free_port() twice may name the same port (it is free again
    # once the probe closes), and two listeners on one port failed a run. Metrics of ingest,
    # scanner, decider, projector, console, audit: base_port + 0..5; up + 6.
    names = ("broker", "smtp", "kata", "sink", "projector", "console", "metrics")
    base = free_port_run(len(names) - 1 + 7)
    ports = {name: base + i for i, name in enumerate(names)}
    config = folder / "katagate.toml"
    config.write_text(f"""
[paths]
state_dir = "{folder / 'state'}"
[kafka]
broker_port = {ports['broker']}
topic_prefix = "{TOPIC_PREFIX}"
[ingest]
port = {ports['smtp']}
relay_domains = ["example.net"]
processes = {ingest_processes}
[decider]
next_hop_port = {ports['sink']}
helo_name = "gw.example.net"
[scanner]
recheck_s = 0.5
[kata]
central_node = "emulator"
poll_interval_s = 1
protection = true
[emulator]
enabled = true
port = {ports['kata']}
[sink]
enabled = true
port = {ports['sink']}
[projector]
port = {ports['projector']}
[console]
port = {ports['console']}
[metrics]
base_port = {ports['metrics']}
""")
    return ports


def start_up(folder: Path, secure: bool = False, env: dict[str, str] | None = None,
             accept_sensor: bool = True) -> subprocess.Popen[str]:
    """`katagate up` on `folder`/katagate.toml, once it says it is up. Its own broker unless
    `env` (by default none of this shell's KATAGATE_ or Kafka variables) names a cluster.
    Started again on a folder whose sensor the emulator accepted, not `accept_sensor`: `up`
    would wait its 120 s for a new sensor to accept before saying it is up."""
    config = folder / "katagate.toml"
    env = env if env is not None else {
        k: v for k, v in os.environ.items()
        if not k.startswith("KATAGATE_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    process = subprocess.Popen(
        [sys.executable, "-m", "katagate", "up", "--config", str(config),
         *(["--accept-sensor"] if accept_sensor else []), *(["--secure"] if secure else [])],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("katagate up exited")
        if line.startswith("katagate is up"):
            break
    return process


def wait_connected(folder: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = (folder / "state" / "logs" / "scanner.log")
        if log.exists() and "connection.state_changed" in log.read_text() and \
                "'state': 'connected'" in log.read_text():
            return
        time.sleep(0.5)
    raise RuntimeError("the gateway did not connect to the emulator")


def delivered(sink_dir: Path) -> int:
    return len(list(sink_dir.glob("*.json"))) if sink_dir.exists() else 0


def wait_delivered(sink_dir: Path, count: int, timeout_s: float = 600) -> float:
    """Seconds until the sink holds `count` messages (or the timeout passed)."""
    began = time.monotonic()
    while delivered(sink_dir) < count and time.monotonic() - began < timeout_s:
        time.sleep(0.2)
    return round(time.monotonic() - began, 1)


DOWNSTREAM = ("scanner", "decider", "projector", "audit")
COMMIT_WITHIN_S = ("0.02", "0.05")  # katagate_ingest_commit_seconds buckets reported


def commit_buckets(metrics_port: int) -> dict[str, float]:
    """Ingest's commit histogram (hand-over to the writer until both writes are acknowledged),
    cumulative counts by bucket, summed over its workers."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as page:
        text = page.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "katagate_ingest_commit_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = sample.labels["le"]
                    found[le] = found.get(le, 0.0) + sample.value
    return found


def commit_within(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The share of the commits between two readings that took at most each reported bucket:
    where the `250` waited, in the writes or before them."""
    count = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    return {f"{float(le) * 1000:g}_ms": round((after.get(le, 0.0) - before.get(le, 0.0))
                                              / count, 4) if count else 0.0
            for le in COMMIT_WITHIN_S}


@contextlib.contextmanager
def downstream_paused(folder: Path) -> Iterator[None]:
    """SIGSTOP the stages after ingest (they catch up when continued): on 2 cores they would
    otherwise take the CPU the ingest figure is about while they process its burst."""
    pids = [pid for pid, stage in processes.children(processes.up_pid(folder)).items()
            if stage in DOWNSTREAM]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def end_to_end(folder: Path, port: int, sink_dir: Path, delivered_before: int, messages: int,
               concurrency: int) -> dict[str, Any]:
    """`messages` of 4 KB at `concurrency` connections, timed until the sink holds them all;
    CPU ms per message of every process `katagate up` started (broker, emulator, sink too)."""
    parent = processes.up_pid(folder)
    before = processes.usage(parent)
    began = time.monotonic()
    sent = send_load(port, messages, 4096, concurrency)
    wait_delivered(sink_dir, delivered_before + sent.messages)
    seconds = time.monotonic() - began
    after = processes.usage(parent)
    held = delivered(sink_dir)
    if held < delivered_before + sent.messages:
        raise RuntimeError(f"end to end at {concurrency} connections: {held} delivered of "
                           f"{delivered_before + sent.messages}")
    cpu = {stage: round((after[stage]["cpu_s"] - before[stage]["cpu_s"]) * 1000
                        / sent.messages, 3) for stage in sorted(after) if stage in before}
    return {"messages": sent.messages, "size": 4096, "concurrency": concurrency,
            "seconds": round(seconds, 2), "msgs_per_s": round(sent.messages / seconds, 1),
            "delivered": held, "ingest_msgs_per_s_during": round(sent.per_second, 1),
            **{k: v for k, v in sent.summary().items() if k != "msgs_per_s"},
            "cpu_ms_per_message": cpu}


# Warm-up ends when the broker's JIT compiler threads spend less than this per message.
JIT_SETTLED_MS = 0.5
JIT_THREADS = ("C1 Compiler", "C2 Compiler")  # the JVM's names, cut to 15 characters


def warm(folder: Path, ports: dict[str, int], sink_dir: Path, round_size: int,
         max_rounds: int = 8) -> tuple[int, dict[str, Any]]:
    """Rounds of `round_size` messages (10 connections) until the broker's compiler threads
    take less than JIT_SETTLED_MS per message of a round: after 500 messages they took as much
    CPU as its request handlers. Returns the messages accepted and each round's figure."""
    broker = next(pid for pid, stage in processes.children(processes.up_pid(folder)).items()
                  if stage == "broker")
    accepted, rounds = delivered(sink_dir), []
    for _ in range(max_rounds):
        before = processes.threads_cpu_s(broker, JIT_THREADS)
        sent = send_load(ports["smtp"], round_size, 4096, 10).messages
        accepted += sent
        wait_delivered(sink_dir, accepted)
        spent = processes.threads_cpu_s(broker, JIT_THREADS) - before
        rounds.append(round(spent * 1000 / max(sent, 1), 2))
        if rounds[-1] < JIT_SETTLED_MS:
            break
    return accepted, {"messages": round_size * len(rounds),
                      "broker_jit_ms_per_msg_by_round": rounds}


def measure(messages: int, sizes: list[int], levels: list[int],
            after_gateway: Callable[[Path, dict[str, int], Path], dict[str, Any]] | None = None,
            warm_up: int = 1000, e2e_levels: Sequence[int] = (10,),
            e2e_messages: int | None = None, ingest_processes: int = 1) -> dict[str, Any]:
    """Ingest against the bare sink, then end to end at each of `e2e_levels` connections
    (`e2e_messages` each, `messages` by default); `after_gateway` runs more sections on the
    same running gateway (its folder, ports and sink folder) and its figures join the report."""
    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-mail-"))
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "ingest": [], "end_to_end": [],
                              "section_seconds": {}}
    timings = report["section_seconds"]
    bare, bare_port = start_bare_sink()
    gateway, ports, sink_dir = start_gateway(folder, ingest_processes=ingest_processes)
    report["ingest_processes"] = ingest_processes
    try:
        wait_connected(folder)
        began = time.monotonic()
        # The broker's JIT compiles its hot paths in the first minutes of traffic: a run from
        # cold measures the compiler. Warm every path first, then measure.
        accepted, report["warm_up"] = warm(folder, ports, sink_dir, warm_up)
        timings["warm_up"] = round(time.monotonic() - began, 1)
        # End to end first, on an idle gateway: after the ingest sweep, thousands of messages
        # would still be draining through the stages and the figure would measure the backlog.
        began = time.monotonic()
        for concurrency in e2e_levels:
            report["end_to_end"].append(end_to_end(folder, ports["smtp"], sink_dir, accepted,
                                                   e2e_messages or messages, concurrency))
            accepted = report["end_to_end"][-1]["delivered"]
            print(json.dumps(report["end_to_end"][-1]), flush=True)
        timings["end_to_end"] = round(time.monotonic() - began, 1)
        # Ingest: every bare-sink run first, on a quiet machine; then every gateway run with
        # the downstream stages paused (see downstream_paused); then they catch up.
        began = time.monotonic()
        configs = [(size, concurrency, max(concurrency * 10,
                                           messages // (4 if size > 10_000 else 1)))
                   for size in sizes for concurrency in levels]
        bases = [send_load(bare_port, n, size, concurrency).summary()
                 for size, concurrency, n in configs]
        gates = []
        with downstream_paused(folder):
            for size, concurrency, n in configs:
                before = commit_buckets(ports["metrics"])
                result = send_load(ports["smtp"], n, size, concurrency)
                accepted += result.messages
                gates.append({**result.summary(), "commits_within": commit_within(
                    before, commit_buckets(ports["metrics"]))})
        report["downstream_caught_up_s"] = wait_delivered(sink_dir, accepted)
        for (size, concurrency, n), base, gate in zip(configs, bases, gates, strict=True):
            report["ingest"].append({
                "size": size, "concurrency": concurrency, "messages": n,
                "bare_sink": base, "gateway": gate,
                "throughput_ratio": round(gate["msgs_per_s"] / base["msgs_per_s"], 3),
                "p99_ratio": round(gate["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"]
                else None,
                "p99_added_ms": round(gate["p99_ms"] - base["p99_ms"], 1),
            })
            print(json.dumps(report["ingest"][-1]), flush=True)
        timings["ingest"] = round(time.monotonic() - began, 1)
        if after_gateway is not None:
            report.update(after_gateway(folder, ports, sink_dir))
    finally:
        gateway.terminate()
        gateway.wait(timeout=120)
        bare.terminate()
        bare.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sizes", default="4096,51200")
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--e2e-concurrency", default="10", help="end-to-end levels")
    parser.add_argument("--ingest-processes", type=int, default=1,
                        help="ingest's SMTP worker processes ([ingest] processes)")
    args = parser.parse_args()
    report = measure(args.messages, [int(s) for s in args.sizes.split(",")],
                     [int(c) for c in args.concurrency.split(",")],
                     e2e_levels=[int(c) for c in args.e2e_concurrency.split(",")],
                     ingest_processes=args.ingest_processes)
    out = run_folder("mailpath")
    rows = ["| size | conc | bare msgs/s | gateway msgs/s | ratio | bare p50/p99 ms | "
            "gateway p50/p99 ms |", "|---|---|---|---|---|---|---|"]
    for r in report["ingest"]:
        rows.append(f"| {r['size']} | {r['concurrency']} | {r['bare_sink']['msgs_per_s']} | "
                    f"{r['gateway']['msgs_per_s']} | {r['throughput_ratio']} | "
                    f"{r['bare_sink']['p50_ms']}/{r['bare_sink']['p99_ms']} | "
                    f"{r['gateway']['p50_ms']}/{r['gateway']['p99_ms']} |")
    for e2e in report["end_to_end"]:
        rows.append(f"\nEnd to end (4 KB, {e2e['concurrency']} connections, instant verdicts): "
                    f"{e2e['msgs_per_s']} msgs/s over {e2e['messages']} messages")
    write_report(out, report, f"Mail path benchmark, {report['when']}",
                 f"{json.dumps(report['machine'])}\n\n" + "\n".join(rows) + "\n")
    print("\n".join(rows))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
