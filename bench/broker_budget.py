"""The per-message budget of a gateway run: for N messages end to end, what the Kafka broker
and each process spend per message, read from real counters (never estimated):

- the broker's requests by API, records and bytes appended (its JMX counters, bench/jmx.py);
- the transactions each stage committed (its Prometheus /metrics);
- the CPU time of every process (/proc, bench/processes.py) and the broker's own (JMX).

The same counters over an idle window just before give the background (heartbeats, fetch long
polls, timers); the "net" column takes its rate times the load's duration off.

    python -m bench.broker_budget [--messages 2000] [--concurrency 10] [--warm-up 500]
                                  [--follower]

With --follower, one more reader of the mail topic follows the load as a stage's loop reads it
(bench/follower.py): what a reader costs, for the levers that would remove one. The broker's
figures then include its fetches.

Writes bench/results/budget-<time>/report.json and report.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import jmx, processes
from bench.budget_table import budget_markdown
from bench.follower import Follower
from bench.mailpath import (
    TOPIC_PREFIX,
    delivered,
    start_gateway,
    wait_connected,
    wait_delivered,
)
from bench.results import run_folder, write_report
from bench.smtp_load import send_load
from katagate.eventlog.topics import TopicNames

# Each process's /metrics port: the gateway's metrics base port plus this (katagate up).
METRICS_OFFSETS = {"ingest": 0, "scanner": 1, "decider": 2, "projector": 3, "console": 4,
                   "audit": 5}
SIZE = 4096
IDLE_S = 10.0
# The broker counts every Fetch again under one of these (consumer or follower): left out of
# the requests, or the total would count fetches twice.
FETCH_KINDS = ("FetchConsumer", "FetchFollower")


def transactions(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    """Transactions by who committed them (and `<who> aborted` for the others), from one
    process's counter samples."""
    out: dict[str, float] = {}
    for name, labels, value in samples:
        outcome = labels.get("outcome", "")
        if name == "katagate_loop_transactions_total":
            who = labels["stage"]
        elif name == "katagate_scanner_transactions_total":
            who = f"scanner {labels['part']}"
        elif name == "katagate_audit_transactions_total":
            who, outcome = "audit", "committed"
        else:
            continue
        key = who if outcome == "committed" else f"{who} {outcome}"
        out[key] = out.get(key, 0.0) + value
    return out


def written(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    return {labels["topic"]: value for name, labels, value in samples
            if name == "katagate_events_written_total"}


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """A process's counter samples; none if it serves no /metrics (a standby, or not running)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return []
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if family.type == "counter"]


def broker_pid(folder: Path, broker_port: int) -> int:
    up = processes.up_pid(folder)
    pid = next((p for p, stage in processes.children(up).items() if stage == "broker"), None)
    pid = pid or jmx.listening_pid(broker_port)
    if pid is None:
        raise RuntimeError(f"no local broker process listens on port {broker_port}")
    return pid


def snapshot(folder: Path, ports: Mapping[str, int],
             broker: jmx.BrokerCounters) -> dict[str, Any]:
    """Every counter of the budget now."""
    taken = time.monotonic()
    stages: dict[str, float] = {}
    records: dict[str, dict[str, float]] = {}
    for process, offset in METRICS_OFFSETS.items():
        samples = scrape(ports["metrics"] + offset)
        for who, count in transactions(samples).items():
            stages[who] = stages.get(who, 0.0) + count
        if own := written(samples):
            records[process] = own
    up = processes.up_pid(folder)
    cpu = {stage: figures["cpu_s"] for stage, figures in processes.usage(up).items()}
    threads = processes.usage_by_thread(up)
    counters = broker.read()
    return {"at": (taken + time.monotonic()) / 2, "broker": counters, "transactions": stages,
            "written": records, "cpu_s": cpu, "threads_cpu_s": threads}


def _delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}


def deltas(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What the counters moved by between two snapshots, and over how many seconds."""
    b, a = before["broker"], after["broker"]
    requests = _delta(b["requests"], a["requests"])
    return {
        "seconds": after["at"] - before["at"],
        "requests": {k: v for k, v in requests.items() if k not in FETCH_KINDS},
        "fetch_kinds": {k: v for k, v in requests.items() if k in FETCH_KINDS},
        "records": a["MessagesInPerSec"] - b["MessagesInPerSec"],
        "records_by_topic": _delta(b["MessagesInPerSecByTopic"], a["MessagesInPerSecByTopic"]),
        "bytes_in": a["BytesInPerSec"] - b["BytesInPerSec"],
        "bytes_out": a["BytesOutPerSec"] - b["BytesOutPerSec"],
        "broker_jmx_cpu_s": (a["ProcessCpuTimeNs"] - b["ProcessCpuTimeNs"]) / 1e9,
        "transactions": _delta(before["transactions"], after["transactions"]),
        "written": {p: _delta(before["written"].get(p, {}), w)
                    for p, w in after["written"].items()},
        "cpu_s": _delta(before["cpu_s"], after["cpu_s"]),
        "threads_cpu_s": _delta(before.get("threads_cpu_s", {}), after.get("threads_cpu_s", {})),
    }


def _per(values: Mapping[str, float], n: float, digits: int = 3) -> dict[str, float]:
    """Each value divided by n, largest first, with their `total`."""
    out = {k: round(v / n, digits) for k, v in sorted(values.items(), key=lambda kv: -kv[1])}
    out["total"] = round(sum(values.values()) / n, digits)
    return out


def budget(before: Mapping[str, Any], after: Mapping[str, Any], messages: int,
           idle: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
           active_s: float | None = None) -> dict[str, Any]:
    """Per message of the `messages` sent between the two snapshots; with `idle` (two snapshots
    of a quiet gateway), the background requests and CPU per second, and per message net of
    that background over the window. Rates per second are over `active_s` (from the first
    message sent to the last delivered) if given, else over the window between the snapshots."""
    d = deltas(before, after)
    seconds = d["seconds"]
    active = active_s or seconds
    broker_cpu = d["cpu_s"].get("broker", 0.0)
    out: dict[str, Any] = {
        "messages": messages,
        "seconds": round(seconds, 1),
        "active_s": round(active, 1),
        "msgs_per_s": round(messages / active, 1),
        "requests_per_msg": _per(d["requests"], messages),
        "fetch_kinds_per_msg": _per(d["fetch_kinds"], messages),
        "records_per_msg": round(d["records"] / messages, 2),
        "records_per_msg_by_topic": _per(d["records_by_topic"], messages),
        "bytes_in_per_msg": round(d["bytes_in"] / messages),
        "bytes_out_per_msg": round(d["bytes_out"] / messages),
        "transactions_per_msg": _per(d["transactions"], messages),
        "transactions_per_s": _per(d["transactions"], active, 1),
        # Every transaction ends with an EndTxn at the broker (commits and aborts, of every
        # transactional producer): a check of the stages' own counts.
        "end_txn_per_msg": round(d["requests"].get("EndTxn", 0.0) / messages, 3),
        "written_per_msg": {p: _per(w, messages) for p, w in d["written"].items() if w},
        "cpu_ms_per_msg": _per({k: v * 1000 for k, v in d["cpu_s"].items()}, messages, 2),
        # Which threads spent it: librdkafka's against the interpreter's, the broker's request
        # handling against its JIT compiler (bench/processes.py, THREAD_KINDS).
        "cpu_ms_per_msg_by_thread": _per(
            {k: v * 1000 for k, v in d["threads_cpu_s"].items()}, messages, 2),
        # The same broker CPU from its JVM (all threads) against /proc: they should agree.
        "broker_cpu_ms_per_msg_jmx": round(d["broker_jmx_cpu_s"] * 1000 / messages, 2),
        "broker_cpu_ms_per_msg_proc": round(broker_cpu * 1000 / messages, 2),
    }
    if idle is not None:
        quiet = deltas(*idle)
        rate = {k: v / quiet["seconds"] for k, v in quiet["requests"].items()}
        cpu_rate = {k: v * 1000 / quiet["seconds"] for k, v in quiet["cpu_s"].items()}
        out["idle"] = {
            "seconds": round(quiet["seconds"], 1),
            "requests_per_s": _per(quiet["requests"], quiet["seconds"], 2),
            "cpu_ms_per_s": _per({k: v * 1000 for k, v in quiet["cpu_s"].items()},
                                 quiet["seconds"], 1),
        }
        out["requests_per_msg_net"] = _per(
            {k: v - rate.get(k, 0.0) * seconds for k, v in d["requests"].items()}, messages)
        out["cpu_ms_per_msg_net"] = _per(
            {k: v * 1000 - cpu_rate.get(k, 0.0) * seconds for k, v in d["cpu_s"].items()},
            messages, 2)
    return out


def settle(ports: Mapping[str, int], quiet_s: float = 1.0,
           timeout_s: float = 30.0) -> None:
    """Until no stage commits a transaction for `quiet_s`: the stages go on after delivery
    (the delivered outcome, the views, the audit), and that is part of each message's cost."""
    def total() -> float:
        return sum(sum(transactions(scrape(ports["metrics"] + o)).values())
                   for o in METRICS_OFFSETS.values())
    deadline = time.monotonic() + timeout_s
    last = total()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = total()
        if now == last:
            return
        last = now


def measure_budget(folder: Path, ports: dict[str, int], sink_dir: Path, messages: int,
                   concurrency: int, idle_s: float = IDLE_S,
                   follower: bool = False) -> dict[str, Any]:
    """The budget of `messages` of 4 KB over `concurrency` connections on a running, warm
    gateway (`katagate up` with its config in `folder`, as bench.mailpath.start_gateway);
    with `follower`, also what one more reader of the mail topic cost (bench/follower.py)."""
    with jmx.BrokerCounters(broker_pid(folder, ports["broker"])) as broker:
        broker.read()  # connects (and starts the broker's agent) outside the windows
        settle(ports)
        idle_before = snapshot(folder, ports, broker)
        time.sleep(idle_s)
        idle_after = snapshot(folder, ports, broker)
        reader = (Follower(f"127.0.0.1:{ports['broker']}", TopicNames(TOPIC_PREFIX).mail)
                  if follower else None)
        try:
            if reader is not None:
                reader.start()
                reader_before = processes.thread_kinds_cpu_s(reader.pid)
            before = snapshot(folder, ports, broker)
            base = delivered(sink_dir)
            began = time.monotonic()
            sent = send_load(ports["smtp"], messages, SIZE, concurrency)
            waited = wait_delivered(sink_dir, base + sent.messages)
            active = time.monotonic() - began
            settle(ports)
            after = snapshot(folder, ports, broker)
            if reader is not None:
                reader_cpu = _delta(reader_before, processes.thread_kinds_cpu_s(reader.pid))
                read = reader.stop()
        finally:
            if reader is not None:
                reader.kill()
    report = budget(before, after, sent.messages, idle=(idle_before, idle_after),
                    active_s=active)
    report.update({"size": SIZE, "concurrency": concurrency, "refused": sent.refused,
                   "delivered": delivered(sink_dir) - base, "delivery_wait_s": waited,
                   "ingest_msgs_per_s": round(sent.per_second, 1)})
    if reader is not None:
        report["follower"] = follower_cost(read, reader_cpu, sent.messages)
    return {"budget": report}


def follower_cost(read: Mapping[str, int], cpu_s: Mapping[str, float],
                  messages: int) -> dict[str, Any]:
    """One reader's cost: CPU by thread kind per record read and per message, fetches per
    message."""
    records = max(read["records"], 1)
    return {
        "records": read["records"],
        "records_per_msg": round(read["records"] / messages, 2),
        "fetches_per_msg": round(read["fetches"] / messages, 3),
        "cpu_us_per_record": _per({k: v * 1e6 for k, v in cpu_s.items()}, records, 1),
        "cpu_ms_per_msg": _per({k: v * 1000 for k, v in cpu_s.items()}, messages, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--warm-up", type=int, default=500)
    parser.add_argument("--idle", type=float, default=IDLE_S,
                        help="seconds of the idle window measured before the load")
    parser.add_argument("--follower", action="store_true",
                        help="one more reader of the mail topic follows the load: its cost")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-budget-"))
    gateway, ports, sink_dir = start_gateway(folder)
    try:
        wait_connected(folder)
        # The broker's JIT compiles its hot paths in the first minute of traffic.
        warm = send_load(ports["smtp"], args.warm_up, SIZE, args.concurrency).messages
        wait_delivered(sink_dir, warm)
        report = measure_budget(folder, ports, sink_dir, args.messages, args.concurrency,
                                args.idle, args.follower)
    finally:
        gateway.terminate()
        gateway.wait(timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
    report["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    out = run_folder("budget")
    table = budget_markdown(report)
    write_report(out, report, f"Per-message budget, {report['when']}", table)
    print(table)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
