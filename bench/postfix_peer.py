"""Debian's Postfix as the peer every katagate mail figure stands beside: a private Postfix relay
instance (bench/postfix_instance.py) relaying everything to a `katagate sink`, the program and
next hop the gateway delivers to, under the same load from the same generator
(bench/smtp_load.py). The bare aiosmtpd sink under that load comes first, as the floor.

Per level of connections: accepted msgs/s and `250` p50/p99 (the generator's), end-to-end msgs/s
(until the sink holds every message), CPU ms per message of each of Postfix's processes (the
instance's master and its children, by name, from /proc) and of the sink.

    python -m bench.postfix_peer [--messages N] [--warm-up N] [--concurrency 1,10,50]

runs the bare sink, Postfix, then katagate end to end (bench/mailpath.py) at the same levels,
Postfix stopped before katagate starts, and writes bench/results/peer-<time>/ (report.json,
report.md, peer.png, cpu.png).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import mailpath, processes
from bench.postfix_instance import SERVICES, PostfixInstance, base_main_cf, version
from bench.results import run_folder, write_report
from bench.smtp_load import send_load
from katagate.eventlog.broker import free_port

SIZE = 4096
# katagate's own processes; the broker, the emulator (a stand-in for KATA) and the sink are
# reported apart (docs/ARCHITECTURE.md).
KATAGATE_OWN = processes.STAGES


def relay_main_cf(root: Path, sink_port: int) -> str:
    """Everything from loopback relayed to the sink; defaults otherwise (queue, concurrency)."""
    return base_main_cf(root) + f"""\
relayhost = [127.0.0.1]:{sink_port}
smtpd_relay_restrictions = permit_mynetworks, reject
"""


def start_sink(folder: Path, port: int) -> subprocess.Popen[str]:
    """`katagate sink run`, as `katagate up` starts the gateway's demo sink; sink_ready() waits
    until it listens (Postfix starts meanwhile)."""
    return subprocess.Popen(
        [sys.executable, "-m", "katagate", "sink", "run", "--port", str(port), "--dir",
         str(folder)], cwd=mailpath.ROOT, stdout=subprocess.PIPE, text=True)


def sink_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("sink="):
        raise RuntimeError(f"katagate sink did not start: {line!r}")


@dataclass(frozen=True)
class TreeCpu:
    """A process tree's CPU seconds at one moment."""

    own_s: float  # the parent's own
    reaped_s: float  # its children that exited and were waited for
    live: dict[int, tuple[str, float]]  # live children: pid -> (name, CPU seconds)


def tree_cpu(parent: int) -> TreeCpu:
    own = processes.cpu_s(parent)
    return TreeCpu(own, processes.cpu_s(parent, reaped=True) - own,
                   processes.children_cpu(parent))


def cpu_by_name(before: TreeCpu, after: TreeCpu, parent: str = "master") -> dict[str, float]:
    """CPU seconds spent between two snapshots, per process name. Postfix's daemons exit after
    max_use requests or max_idle seconds: their time is then only in the parent's count of
    reaped children, reported as "exited"."""
    spent = {parent: after.own_s - before.own_s}
    for pid, (name, cpu) in after.live.items():
        spent[name] = spent.get(name, 0.0) + cpu - before.live.get(pid, (name, 0.0))[1]
    gone_before = sum(cpu for pid, (_, cpu) in before.live.items() if pid not in after.live)
    exited = after.reaped_s - before.reaped_s - gone_before
    if exited > 0:
        spent["exited"] = exited
    return {name: round(s, 3) for name, s in spent.items() if s > 0}


def per_message_ms(spent_s: dict[str, float], messages: int) -> dict[str, float]:
    return {name: round(s * 1000 / messages, 3) for name, s in sorted(spent_s.items())}


def row(concurrency: int, summary: dict[str, float], messages: int, seconds: float,
        cpu_ms: dict[str, float], groups: dict[str, float]) -> dict[str, Any]:
    """One system at one level, the same keys for the bare sink, Postfix and katagate."""
    return {"concurrency": concurrency, "messages": messages, "seconds": round(seconds, 2),
            "end_to_end_msgs_per_s": round(messages / seconds, 1) if seconds else 0.0,
            "accepted_msgs_per_s": summary["msgs_per_s"], "p50_ms": summary["p50_ms"],
            "p95_ms": summary["p95_ms"], "p99_ms": summary["p99_ms"],
            "refused": summary["refused"], "cpu_ms_per_message": cpu_ms,
            "cpu_ms_per_message_groups": {k: round(v, 3) for k, v in groups.items()}}


class PostfixPeer:
    """A Postfix relay instance on a free port and the sink it relays to; close() removes both."""

    def __init__(self) -> None:
        self.instance = PostfixInstance(prefix="katagate-bench-postfix-")
        self.sink_dir = self.instance.root / "sink"
        self.sink: subprocess.Popen[str] | None = None
        self.accepted = 0
        try:
            sink_port, self.port = free_port(), free_port()
            self.sink = start_sink(self.sink_dir, sink_port)
            self.instance.start(relay_main_cf(self.instance.root, sink_port),
                                SERVICES + f"127.0.0.1:{self.port} inet n - n - - smtpd\n")
            self.master = self.instance.master_pid()
            sink_ready(self.sink)
        except BaseException:
            self.close()
            raise

    def send(self, messages: int, concurrency: int) -> tuple[dict[str, float], int, float]:
        """The load's summary, messages accepted, seconds until the sink held them all."""
        began = time.monotonic()
        sent = send_load(self.port, messages, SIZE, concurrency)
        self.accepted += sent.messages
        mailpath.wait_delivered(self.sink_dir, self.accepted)
        seconds = time.monotonic() - began
        if mailpath.delivered(self.sink_dir) < self.accepted:
            raise RuntimeError(f"Postfix relayed {mailpath.delivered(self.sink_dir)} of "
                               f"{self.accepted}:\n{self.instance.log()[-3000:]}")
        return sent.summary(), sent.messages, seconds

    def level(self, messages: int, concurrency: int) -> dict[str, Any]:
        assert self.sink is not None
        sink_before, postfix_before = processes.cpu_s(self.sink.pid), tree_cpu(self.master)
        summary, accepted, seconds = self.send(messages, concurrency)
        postfix = cpu_by_name(postfix_before, tree_cpu(self.master))
        sink = processes.cpu_s(self.sink.pid) - sink_before
        cpu_ms = per_message_ms({**{f"postfix {k}": v for k, v in postfix.items()},
                                 "sink": sink}, accepted)
        return row(concurrency, summary, accepted, seconds, cpu_ms, {
            "postfix": sum(postfix.values()) * 1000 / accepted,
            "sink": sink * 1000 / accepted})

    def close(self) -> None:
        try:
            self.instance.stop()
        finally:
            if self.sink is not None:
                self.sink.terminate()
                self.sink.wait(timeout=30)


def measure(messages: int, levels: list[int], warm_up: int) -> dict[str, Any]:
    """The bare sink, then Postfix, each warmed up with `warm_up` messages at 10 connections,
    then `messages` at each level. Postfix is stopped when this returns."""
    report: dict[str, Any] = {"postfix_version": version(), "size": SIZE,
                              "warm_up": warm_up, "bare_sink": [], "postfix": []}
    bare, port = mailpath.start_bare_sink()
    try:
        send_load(port, warm_up, SIZE, 10)
        for concurrency in levels:
            before = processes.cpu_s(bare.pid)
            sent = send_load(port, messages, SIZE, concurrency)
            spent = processes.cpu_s(bare.pid) - before
            # It keeps nothing: accepted is end to end.
            report["bare_sink"].append(row(
                concurrency, sent.summary(), sent.messages, sent.seconds,
                per_message_ms({"bare sink": spent}, sent.messages),
                {"bare_sink": spent * 1000 / sent.messages}))
    finally:
        bare.terminate()
        bare.wait(timeout=30)
    began = time.monotonic()
    peer = PostfixPeer()
    try:
        peer.send(warm_up, 10)
        report["warm_up_s"] = round(time.monotonic() - began, 1)
        for concurrency in levels:
            report["postfix"].append(peer.level(messages, concurrency))
            print(json.dumps(report["postfix"][-1]), flush=True)
    finally:
        peer.close()
    return report


def katagate_row(e2e: dict[str, Any]) -> dict[str, Any]:
    """mailpath's end-to-end row at one level, in the peer's row form."""
    cpu = e2e["cpu_ms_per_message"]
    groups = {"katagate": sum(v for k, v in cpu.items() if k in KATAGATE_OWN),
              **{k: cpu.get(k, 0.0) for k in ("broker", "emulator", "sink")}}
    accepted = {**e2e, "msgs_per_s": e2e["ingest_msgs_per_s_during"]}
    return {**row(e2e["concurrency"], accepted, e2e["messages"], e2e["seconds"], cpu, groups),
            "end_to_end_msgs_per_s": e2e["msgs_per_s"]}


def against(peer: dict[str, Any], end_to_end: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level measured for all three: the bare sink, Postfix, katagate, and katagate's ratio
    to Postfix (end-to-end msgs/s)."""
    bare = {r["concurrency"]: r for r in peer["bare_sink"]}
    postfix = {r["concurrency"]: r for r in peer["postfix"]}
    rows = []
    for e2e in end_to_end:
        level = e2e["concurrency"]
        if level not in postfix or level not in bare:
            continue
        ours = katagate_row(e2e)
        theirs = postfix[level]["end_to_end_msgs_per_s"]
        rows.append({"concurrency": level, "bare_sink": bare[level],
                     "postfix": postfix[level], "katagate": ours,
                     "katagate_to_postfix": round(ours["end_to_end_msgs_per_s"] / theirs, 3)
                     if theirs else None})
    return rows


def main() -> int:
    from bench import peer_report

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--warm-up", type=int, default=500)
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--out", type=Path, help="results folder")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    report: dict[str, Any] = {"postfix_peer": measure(args.messages, levels, args.warm_up)}
    report["mail_path"] = mailpath.measure(args.messages, [], [], warm_up=args.warm_up,
                                           e2e_levels=levels)
    report["against_postfix"] = against(report["postfix_peer"],
                                        report["mail_path"]["end_to_end"])
    report["machine"] = report["mail_path"]["machine"]
    out = run_folder("peer", args.out)
    text = peer_report.section(report) + "".join(
        f"\n![{p.stem}]({p.name})\n" for p in peer_report.plots(report, out))
    write_report(out, report, f"Against Postfix, {report['mail_path']['when']}",
                 f"Machine: `{json.dumps(report['machine'])}`\n\n{text}")
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
