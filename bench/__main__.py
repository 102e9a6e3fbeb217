"""The benchmark suite, in one go on this machine: every figure side by side with its baseline
in the same run, as a ratio, with the machine's details.

    python -m bench [--quick] [--out DIR] [--write-docs]
    python -m bench search [--messages N] ...   # message search over a big store (search.py)
    python -m bench verdict-cache [--messages N] ...   # identical mail, cache off/on

1. limits: the broker's produce rate for 4 KB and 50 KB records from one Python producer;
   the bare aiosmtpd sink's CPU per message.
2. ingest: messages/s and 250 latency against the bare sink (bench/mailpath.py).
3. end to end: SMTP in to delivered at the next hop, instant verdicts, at 1, 10 and 50
   connections, against Debian's Postfix relaying the same load to the same sink, and the bare
   sink (bench/postfix_peer.py; Postfix runs first and is stopped before katagate starts).
4. quarantine at scale: N messages held for their verdicts; CPU, memory and Central Node
   requests per poll while they wait; time to drain (bench/scale.py).
5. memory: every stage's RSS after the mail path and after the quarantine.
6. replay: events/s rebuilding every projection against a bare consumer (bench/replay.py).

Writes report.json, report.md and PNG plots into bench/results/suite-<time>/ (or --out);
`--write-docs` also writes docs/PERFORMANCE.md and docs/SCALING.md (bench/sizing.py).
`--quick` checks the suite works (`pytest -m soak`
runs it); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    broker_budget,
    mailpath,
    peer_report,
    postfix_peer,
    processes,
    replay,
    scale,
    sizing,
)
from bench.budget_table import budget_markdown
from bench.machine import machine
from bench.smtp_load import message, send_load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def broker_produce_rate(records: int, size: int) -> dict[str, float]:
    """One Python producer, the gateway's producer settings, no transactions: the ceiling."""

    from katagate.eventlog.broker import LocalBroker, free_port
    from katagate.eventlog.clients import new_admin, new_producer
    from katagate.eventlog.settings import KafkaSettings
    from katagate.eventlog.topics import TopicSpec, ensure_topics

    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-limits-"))
    broker = LocalBroker(folder)
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or ""
    try:
        if not servers:
            servers = broker.start(port=free_port()).bootstrap_servers or ""
        settings = KafkaSettings(bootstrap_servers=servers, topic_prefix=uuid.uuid4().hex[:8])
        topic = f"{settings.topic_prefix}.limits"
        ensure_topics(new_admin(settings), settings, [TopicSpec(topic, 6)])
        producer = new_producer(settings, {"enable.idempotence": True, "acks": "all",
                                           "linger.ms": 2, "compression.type": "zstd"})
        payload = message(size, 0)
        began = time.perf_counter()
        for i in range(records):
            while True:
                try:
                    producer.produce(topic, payload, key=str(i % 64).encode())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(120)
        seconds = time.perf_counter() - began
        return {"records_per_s": round(records / seconds), "mb_per_s": round(
            records * len(payload) / seconds / 1e6, 1)}
    finally:
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def bare_sink_cpu(messages: int) -> dict[str, float]:
    process, port = mailpath.start_bare_sink()
    try:
        before = processes.cpu_s(process.pid)
        sent = send_load(port, messages, 4096, 10)
        return {"cpu_ms_per_message": round((processes.cpu_s(process.pid) - before)
                                            / sent.messages * 1000, 3),
                "msgs_per_s": sent.per_second}
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(quick: bool, memory_marks: list[int] | None = None, ingest_processes: int = 1
        ) -> dict[str, Any]:
    n = {"records": 2_000 if quick else 50_000, "mail": 200 if quick else 2_000,
         "held": 100 if quick else 5_000, "replay": 500 if quick else 102_000,
         "peer": 50 if quick else 2_000}
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "quick": quick, "sizes": n,
                              "ingest_processes": ingest_processes}
    report["limits"] = {
        "broker_produce_4kb": broker_produce_rate(n["records"], 4096),
        "broker_produce_50kb": broker_produce_rate(n["records"] // 10, 51200),
        "bare_sink": bare_sink_cpu(n["mail"]),
    }
    print(json.dumps(report["limits"]), flush=True)

    # Postfix first, stopped before katagate starts: they never share the CPU.
    sizes, levels = ([4096], [1, 10]) if quick else ([4096, 51200], [1, 10, 50])
    warm_up = 50 if quick else 1000
    began = time.monotonic()
    report["postfix_peer"] = postfix_peer.measure(n["peer"], levels, warm_up)
    timings: dict[str, float] = {"postfix_peer": round(time.monotonic() - began, 1)}

    def on_the_gateway(folder: Path, ports: dict[str, int], sink: Path) -> dict[str, Any]:
        parent = processes.up_pid(folder)
        after_mail = processes.usage(parent)
        # The per-message budget, on the gateway the sweep warmed (the broker's JIT included).
        began = time.monotonic()
        budget = broker_budget.measure_budget(folder, ports, sink, n["peer"], 10)
        timings["budget"] = round(time.monotonic() - began, 1)
        began = time.monotonic()
        quarantine = scale.quarantine_at_scale(folder, ports, sink, n["held"],
                                               ports["metrics"] + 1)
        timings["quarantine"] = round(time.monotonic() - began, 1)
        print(json.dumps(quarantine), flush=True)
        figures: dict[str, Any] = {
            **budget, "quarantine": quarantine,
            "memory": {"after_mail_path": after_mail,
                       "after_quarantine": processes.usage(parent)}}
        if memory_marks:
            began = time.monotonic()
            figures["memory_marks"] = scale.memory_at_marks(folder, ports, sink, memory_marks)
            timings["memory_marks"] = round(time.monotonic() - began, 1)
            print(json.dumps(figures["memory_marks"]), flush=True)
        return figures

    report["mail_path"] = mailpath.measure(n["mail"], sizes, levels, on_the_gateway,
                                           warm_up=warm_up, e2e_levels=levels,
                                           e2e_messages=n["peer"],
                                           ingest_processes=ingest_processes)
    report["against_postfix"] = postfix_peer.against(report["postfix_peer"],
                                                     report["mail_path"]["end_to_end"])
    began = time.monotonic()
    report["replay"] = replay.measure(n["replay"])
    timings["replay"] = round(time.monotonic() - began, 1)
    report["mail_path"]["section_seconds"].update(timings)
    return report


def _warm_up(mail: dict[str, Any]) -> str:
    warm = mail.get("warm_up") or {}
    rounds = warm.get("broker_jit_ms_per_msg_by_round", [])
    settled = bool(rounds) and rounds[-1] < mailpath.JIT_SETTLED_MS
    return (f"{warm.get('messages')} messages, in rounds until the broker's JIT compiler "
            f"threads took under {mailpath.JIT_SETTLED_MS} ms per message (by round: "
            f"{', '.join(str(r) for r in rounds)}"
            + ("" if settled else "; not settled when the rounds ran out: the broker's figures "
               "below include its compiler") + ")")


def markdown(report: dict[str, Any]) -> str:
    mail, limits = report["mail_path"], report["limits"]
    quick = " (quick: the figures mean nothing)" if report["quick"] else ""
    lines = [f"# Benchmark suite, {report['when']}{quick}",
             "", f"Machine: `{json.dumps(report['machine'])}`", "",
             "## Physical limits", "",
             f"- broker, one Python producer: {limits['broker_produce_4kb']['records_per_s']} "
             f"records/s of 4 KB ({limits['broker_produce_4kb']['mb_per_s']} MB/s), "
             f"{limits['broker_produce_50kb']['records_per_s']} of 50 KB "
             f"({limits['broker_produce_50kb']['mb_per_s']} MB/s)",
             f"- bare aiosmtpd sink: {limits['bare_sink']['cpu_ms_per_message']} ms CPU per "
             f"4 KB message", "",
             "## Ingest (250 after the message is durable in Kafka) against the bare sink", "",
             f"Ingest ran {report.get('ingest_processes', 1)} SMTP worker process(es) on its "
             "port (`[ingest] processes`, ingest/README.md, \"Worker processes\"), here "
             "throughout the suite.", "",
             "| size | connections | bare msgs/s | gateway msgs/s | ratio | bare p50/p99 ms | "
             "gateway p50/p99 ms | p99 added ms |", "|---|---|---|---|---|---|---|---|"]
    for r in mail["ingest"]:
        lines.append(f"| {r['size']} | {r['concurrency']} | {r['bare_sink']['msgs_per_s']} | "
                     f"{r['gateway']['msgs_per_s']} | {r['throughput_ratio']} | "
                     f"{r['bare_sink']['p50_ms']}/{r['bare_sink']['p99_ms']} | "
                     f"{r['gateway']['p50_ms']}/{r['gateway']['p99_ms']} | "
                     f"{r.get('p99_added_ms')} |")
    lines += ["", "Every bare-sink run comes first; then the gateway runs, with the stages after "
              "ingest paused (SIGSTOP): on 2 cores they would take the CPU this figure is about "
              "while processing the burst. Continued, they caught up in "
              f"{mail.get('downstream_caught_up_s')} s. End to end measures everything at once."]
    lines += ["", peer_report.section(report)]
    if "budget" in mail:
        lines += ["", "## The per-message budget (broker counters over JMX, stage counters, "
                  "/proc)", "", budget_markdown(mail["budget"])]
    e2e = mail["end_to_end"]
    stages = sorted({stage for r in e2e for stage in r["cpu_ms_per_message"]})
    lines += ["", "## katagate end to end, CPU ms per message by process", "",
              f"After a warm-up of {_warm_up(mail)}; 4 KB, instant verdicts.", "",
              "| connections | msgs/s | " + " | ".join(stages) + " |",
              "|---|---|" + "---|" * len(stages)]
    for r in e2e:
        lines.append(f"| {r['concurrency']} | {r['msgs_per_s']} | " + " | ".join(
            str(r["cpu_ms_per_message"].get(stage)) for stage in stages) + " |")
    q = mail.get("quarantine", {})
    lines += ["", "## Quarantine at scale", "",
              f"- {q.get('held_messages')} messages held; CPU % per stage while they wait: "
              f"`{json.dumps(q.get('cpu_percent_while_waiting'))}`",
              f"- RSS MB while they wait: `{json.dumps(q.get('rss_mb_while_waiting'))}`",
              f"- Central Node requests per poll: {q.get('central_node_requests_per_poll')} "
              f"({q.get('polls_while_waiting')} polls in {q.get('wait_s')} s)",
              f"- drained in {q.get('drain_s')} s once verdicts came ({q.get('drained')} "
              f"delivered; {q.get('delivered_before_the_verdicts')} of them before the "
              f"verdicts came, which makes the drain time meaningless when not 0)"]
    memory = mail.get("memory", {})
    lines += ["", "## Memory per stage (RSS MB)", "", "| stage | after the mail path | "
              "after the quarantine |", "|---|---|---|"]
    for stage, figures in sorted(memory.get("after_quarantine", {}).items()):
        before = memory.get("after_mail_path", {}).get(stage, {}).get("rss_mb")
        lines.append(f"| {stage} | {before} | {figures['rss_mb']} |")
    marks = mail.get("memory_marks")
    if marks:
        counts = [str(m["messages"]) for m in marks["marks"]]
        lines += ["", "## Memory as messages go through (RSS MB)", "",
                  "| stage | " + " | ".join(f"after {c}" for c in counts) + " | growth |",
                  "|---|" + "---|" * (len(counts) + 1)]
        for stage in sorted(marks["marks"][0]["rss_mb"]):
            row = [m["rss_mb"].get(stage) for m in marks["marks"]]
            lines.append(f"| {stage} | " + " | ".join(str(v) for v in row)
                         + f" | {marks['growth_percent'].get(stage)} % |")
    rp = report["replay"]
    lines += ["", "## Replay", "",
              f"{rp['events']} events: bare consumer {rp['bare']['events_per_s']} / "
              f"{rp['bare_again']['events_per_s']} events/s, with decoding "
              f"{rp['decode']['events_per_s']} ({rp['decode_ratio_to_bare']}x), replay "
              f"{rp['replay']['events_per_s']} ({rp['replay_ratio_to_bare']}x); replay RSS "
              f"`{json.dumps({k: v for k, v in rp['replay'].items() if k.startswith('rss')})}`",
              ""]
    return "\n".join(lines)


def plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = report["mail_path"]["ingest"]
    labels = [f"{r['size'] // 1024} KB x {r['concurrency']}" for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(rows))
    left.bar([i - 0.2 for i in x], [r["bare_sink"]["msgs_per_s"] for r in rows], 0.4,
             label="bare aiosmtpd sink")
    left.bar([i + 0.2 for i in x], [r["gateway"]["msgs_per_s"] for r in rows], 0.4,
             label="katagate ingest")
    left.set_xticks(list(x), labels, rotation=30)
    left.set_ylabel("messages/s")
    left.legend()
    left.set_title("Ingest throughput")
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-")):
        right.plot(list(x), [r["gateway"][key] for r in rows], style, label=f"gateway {key}")
        right.plot(list(x), [r["bare_sink"][key] for r in rows], style, alpha=0.4,
                   label=f"bare {key}")
    right.set_xticks(list(x), labels, rotation=30)
    right.set_ylabel("250 latency, ms")
    right.set_yscale("log")
    right.legend(fontsize=7)
    right.set_title("Latency percentiles")
    figure.tight_layout()
    path = out / "ingest.png"
    figure.savefig(path, dpi=100)
    written.append(path)
    plt.close(figure)
    return written + peer_report.plots(report, out)


def main() -> int:
    if sys.argv[1:2] == ["search"]:  # a benchmark of its own: no broker, one SQLite store
        from bench import search

        return search.main(sys.argv[2:])
    if sys.argv[1:2] == ["verdict-cache"]:  # two fresh gateways, a burst of identical mail
        from bench import verdict_cache

        return verdict_cache.main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks it works")
    parser.add_argument("--out", type=Path, help="results folder")
    parser.add_argument("--write-docs", action="store_true",
                        help="also docs/PERFORMANCE.md and docs/SCALING.md")
    parser.add_argument("--memory", metavar="N,N", default="",
                        help="also every stage's RSS once N messages went through (e.g. "
                        "10000,100000: at about 100 messages/s here, a long run)")
    # The shipped default (1): two workers on 2 cores took more mail at 50 connections, left the
    # p99 and end to end where they were (docs/decisions/0011), and cost CPU at low load.
    parser.add_argument("--ingest-processes", type=int, default=1,
                        help="ingest's SMTP workers ([ingest] processes; default 1)")
    args = parser.parse_args()
    # Quick mode runs the memory section too, with marks small enough to check it works.
    marks = [int(m) for m in args.memory.split(",") if m.strip()] or (
        [20, 40] if args.quick else [])
    began = time.monotonic()
    report = run(args.quick, marks, args.ingest_processes)
    report["suite_seconds"] = round(time.monotonic() - began)
    out = args.out or RESULTS / f"suite-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report) + f"\nThe suite took {report['suite_seconds']} s. Time per section " \
        f"(s): `{json.dumps(report['mail_path']['section_seconds'])}`\n"
    images = plots(report, out)
    text += "".join(f"\n![{p.stem}]({p.name})\n" for p in images)
    (out / "report.md").write_text(text)
    scaling = sizing.scaling_markdown(report)
    (out / "scaling.md").write_text(scaling)
    if args.write_docs:
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        for image in images:
            shutil.copy(image, docs / f"performance-{image.name}")
        limits = (Path(__file__).parent / "limits.md").read_text()
        (docs / "PERFORMANCE.md").write_text(text.replace("](", "](performance-") + "\n"
                                             + limits)
        page = docs / "SCALING.md"
        page.write_text(sizing.with_section(page.read_text(), scaling))
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
