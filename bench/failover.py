"""How long mail waits when part of a replicated katagate dies: a 3-node cluster and two
instances of every stage under a steady load, one fault at a time, each held and then healed.

The faults, in order: a broker (kill -9); an ingest instance; the scanner instance that does
not own the connection lifecycle, then the decider instance that does not own the quarantine
ledger (their partitions move to the other instance after the consumer session timeout); the
ledger owner; the lifecycle owner. Each victim stays dead for `--hold` seconds, is started
again, and the load runs `--recover` seconds more before the next fault.

For a quiet baseline window and for every fault's window (messages accepted from 5 s before
the kill until it was healed): the end-to-end latency (the 250 to arrival at the next hop:
p50, p99, max), how many messages took longer than the baseline allows, the SMTP attempts
that failed or got a 4xx, and for the owners how long until another instance took over.

    python -m bench.failover [--hold S] [--recover S] [--rate MSGS_PER_S]

Writes bench/results/failover-<time>/report.json and report.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from bench.machine import machine
from katagate.demo_sink.store import read_messages
from katagate.eventlog.broker.cluster import LocalCluster
from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LEAD_S = 5.0  # messages accepted this long before a kill were still in flight at it


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def latencies(accepted_at: dict[str, float], arrived_at: dict[str, float], start: float,
              end: float) -> list[float]:
    """End-to-end seconds of the messages whose 250 came within [start, end)."""
    return [arrived_at[m] - t for m, t in accepted_at.items()
            if start <= t < end and m in arrived_at]


def window(accepted_at: dict[str, float], arrived_at: dict[str, float], start: float,
           end: float, slow_s: float | None = None) -> dict[str, Any]:
    """A window's figures: messages, end-to-end p50/p99/max (s), and with `slow_s` how many
    took longer than that. Messages accepted in it that never arrived are counted apart."""
    taken = latencies(accepted_at, arrived_at, start, end)
    missing = sum(1 for m, t in accepted_at.items() if start <= t < end and m not in arrived_at)
    figures: dict[str, Any] = {
        "messages": len(taken), "not_arrived": missing,
        "p50_s": round(percentile(taken, 50), 2), "p99_s": round(percentile(taken, 99), 2),
        "max_s": round(max(taken, default=0.0), 2)}
    if slow_s is not None:
        figures["slower_than_baseline"] = sum(1 for s in taken if s > slow_s)
    return figures


def timeline(accepted_at: dict[str, float], arrived_at: dict[str, float], start: float,
             step_s: float = 2.0) -> list[list[float]]:
    """Per `step_s` of acceptance from `start`: [seconds since start, messages, the longest
    end-to-end time among them] (what a reader plots against the faults' marks)."""
    buckets: dict[int, list[float]] = {}
    for m, t in accepted_at.items():
        if m in arrived_at and t >= start:
            buckets.setdefault(int((t - start) // step_s), []).append(arrived_at[m] - t)
    return [[round(k * step_s, 1), len(v), round(max(v), 2)] for k, v in sorted(buckets.items())]


def slow_threshold(baseline: dict[str, Any]) -> float:
    """What counts as delayed by a fault: over twice the quiet p99, and at least 1 s over it
    (a quiet p99 of 0.3 s doubled is within the machine's own noise)."""
    return float(max(2 * baseline["p99_s"], baseline["p99_s"] + 1.0))


@dataclass(frozen=True)
class Fault:
    name: str
    # Kills the victim; returns its name and what starts it again.
    inject: Callable[[], tuple[str, Callable[[], None]]]
    # Seconds until another instance took the victim's role over, or None while not yet.
    taken_over: Callable[[str, float], float | None] | None = None


def run(hold_s: float, recover_s: float, rate: float, warm_s: float, baseline_s: float,
        keep: Path | None = None) -> dict[str, Any]:
    # The fault suite's process harness: the stages as killable processes, MTA-like senders.
    from tests.faults import owners
    from tests.faults.harness import Rig
    from tests.faults.senders import Senders

    folder = keep or Path(tempfile.mkdtemp(prefix="katagate-bench-failover-"))
    cluster = LocalCluster(folder / "cluster")
    cluster.start(brokers=3)
    layout = cluster.layout()
    assert layout is not None
    kafka = KafkaSettings(bootstrap_servers=layout.bootstrap_servers, topic_prefix="failover",
                          mail_partitions=6, transaction_timeout_ms=10_000,
                          request_timeout_s=30.0)
    ensure_topics(new_admin(kafka), kafka)
    rig = Rig(kafka, folder / "rig", instances=2).start()
    rig.emulator.cli("faults", "set", "--latency", "uniform:0.05:0.3")

    def kill(stage: str) -> tuple[str, Callable[[], None]]:
        rig.stages[stage].kill()
        return stage, rig.stages[stage].start

    def kill_broker() -> tuple[str, Callable[[], None]]:
        cluster.kill_node(2)

        def start() -> None:
            cluster.start_node(2)
        return "node 2", start

    faults = [
        Fault("a broker", kill_broker),
        Fault("an ingest instance", lambda: kill("ingest-1")),
        Fault("a scanner instance (not the lifecycle owner)",
              lambda: kill(owners.other(owners.lifecycle_owner(rig)))),
        Fault("a decider instance (not the ledger owner)",
              lambda: kill(owners.other(owners.ledger_owner(rig)))),
        Fault("the quarantine ledger owner (a decider)",
              lambda: kill(owners.ledger_owner(rig)),
              lambda dead, since: owners.ledger_taken_over(rig, dead, since)),
        Fault("the connection lifecycle owner (a scanner)",
              lambda: kill(owners.lifecycle_owner(rig)),
              lambda dead, since: owners.lifecycle_taken_over(rig, dead, since)),
    ]
    # Four MTA-like threads; each pauses so that together they offer about `rate` msgs/s.
    senders = Senders(rig.smtp_port, count=10_000_000, threads=4, pause_s=4 / rate,
                      other_ports=tuple(rig.smtp_ports[1:]))
    wall_minus_monotonic = time.time() - time.monotonic()
    marks: list[dict[str, Any]] = []
    try:
        senders.start()
        time.sleep(warm_s)
        baseline_at = time.time()
        time.sleep(baseline_s + LEAD_S)  # what the first fault's window takes is not baseline
        for fault in faults:
            began = time.time()
            victim, restore = fault.inject()
            mark: dict[str, Any] = {"fault": fault.name, "victim": victim, "at": began}
            while fault.taken_over and time.time() < began + hold_s:
                taken = fault.taken_over(victim, began)
                if taken is not None:
                    mark["taken_over_s"] = round(taken, 1)
                    break
                time.sleep(0.2)
            time.sleep(max(0.0, began + hold_s - time.time()))
            restore()
            mark["healed"] = time.time()
            marks.append(mark)
            print(f"{fault.name}: {victim} healed after {mark['healed'] - began:.1f} s"
                  + (f", taken over in {mark['taken_over_s']} s" if "taken_over_s" in mark
                     else ""), flush=True)
            time.sleep(recover_s)
        senders.stop.set()
        senders.join(timeout_s=120)
        accepted_at = dict(senders.accepted_at)
        arrived_at = _arrivals(rig.sink.folder, set(accepted_at), timeout_s=300)
    finally:
        rig.stop()
        cluster.stop(timeout=30)
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)

    started = min(accepted_at.values(), default=baseline_at)
    baseline = window(accepted_at, arrived_at, baseline_at, baseline_at + baseline_s)
    slow_s = slow_threshold(baseline)
    rows = []
    for mark in marks:
        start, end = mark["at"] - LEAD_S, mark["healed"]
        attempts = [a for a in senders.attempts
                    if mark["at"] <= a.began + wall_minus_monotonic < end]
        rows.append({
            "fault": mark["fault"], "victim": mark["victim"],
            "held_s": round(mark["healed"] - mark["at"], 1),
            "taken_over_s": mark.get("taken_over_s"),
            "smtp_failed": sum(1 for a in attempts if a.code is None),
            "smtp_4xx": sum(1 for a in attempts if a.code is not None and 400 <= a.code < 500),
            **window(accepted_at, arrived_at, start, end, slow_s)})
    return {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
            "rate_offered": rate, "hold_s": hold_s, "recover_s": recover_s,
            "accepted": len(accepted_at), "arrived": len(arrived_at),
            "baseline": baseline, "slow_s": round(slow_s, 2), "faults": rows,
            "marks_s": [[m["fault"], round(m["at"] - started, 1), round(m["healed"] - started, 1)]
                        for m in marks],
            "timeline": timeline(accepted_at, arrived_at, started)}


def _arrivals(sink: Path, wanted: set[str], timeout_s: float) -> dict[str, float]:
    """Message-ID -> time.time() of its arrival at the next hop, once every wanted one is
    there or the time is up (what is missing then shows in the report as not arrived)."""
    deadline = time.monotonic() + timeout_s
    while True:
        arrived = {}
        for stored in read_messages(sink):
            message_id = BytesHeaderParser().parsebytes(stored.data)["Message-ID"]
            arrived[str(message_id)] = stored.received_at.timestamp()
        if wanted <= arrived.keys() or time.monotonic() > deadline:
            return {m: t for m, t in arrived.items() if m in wanted}
        time.sleep(1)


def markdown(report: dict[str, Any]) -> str:
    base = report["baseline"]
    lines = [f"# How long mail waits when part of katagate dies ({report['when']})", "",
             f"Machine: {report['machine']}.", "",
             f"3 KRaft nodes, two instances of every stage, about {report['rate_offered']} "
             f"msgs/s offered; each victim dead for {report['hold_s']} s, then "
             f"{report['recover_s']} s to recover. {report['accepted']} accepted, "
             f"{report['arrived']} arrived at the next hop.", "",
             f"Quiet baseline: {base['messages']} messages, end to end p50 {base['p50_s']} s, "
             f"p99 {base['p99_s']} s, max {base['max_s']} s. Slower than the baseline allows: "
             f"over {report['slow_s']} s.", "",
             "| fault (victim) | owner taken over, s | SMTP failed / 4xx | messages | "
             "end to end p50 / p99 / max, s | slower than baseline | not arrived |",
             "|---|---|---|---|---|---|---|"]
    for row in report["faults"]:
        taken = "" if row["taken_over_s"] is None else row["taken_over_s"]
        lines.append(f"| {row['fault']} ({row['victim']}) | {taken} | {row['smtp_failed']} / "
                     f"{row['smtp_4xx']} | {row['messages']} | {row['p50_s']} / "
                     f"{row['p99_s']} / {row['max_s']} | {row['slower_than_baseline']} | "
                     f"{row['not_arrived']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hold", type=float, default=30.0,
                        help="seconds each victim stays dead (default 30)")
    parser.add_argument("--recover", type=float, default=20.0,
                        help="seconds of load between a heal and the next fault (default 20)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="messages per second offered, at most (default 20)")
    parser.add_argument("--warm-up", type=float, default=40.0,
                        help="seconds of load before the baseline (second instances joining "
                             "move partitions at first; default 40)")
    parser.add_argument("--baseline", type=float, default=20.0)
    parser.add_argument("--keep", type=Path,
                        help="an empty folder to keep the cluster's and the stages' logs in")
    args = parser.parse_args()
    if args.hold <= 12 or args.rate <= 0:
        parser.error("--hold must be over 12 s (a dead consumer's partitions move after its "
                     "10 s session timeout) and --rate above 0")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            parser.error(f"--keep: {args.keep} is not empty")
    report = run(args.hold, args.recover, args.rate, args.warm_up, args.baseline, args.keep)
    out = RESULTS / f"failover-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
