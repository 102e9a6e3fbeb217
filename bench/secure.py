"""What the secure backbone costs: the whole gateway end to end on a plaintext broker and on a
secure one (SASL_SSL with SCRAM-SHA-512, ACLs enforced, every stage on its own principal),
side by side in one run, rounds alternating so that a noisy neighbour hurts both alike.

    python -m bench.secure [--messages 2000] [--rounds 2]

For each: messages/s from SMTP in to delivered at the next hop (4 KB, 10 connections, an
instant-verdict emulator), and CPU ms per message of the broker and of each stage, read from
/proc over the measured window. Writes bench/results/secure-<time>/report.json and report.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import processes
from bench.machine import machine
from bench.mailpath import start_gateway, wait_connected, wait_delivered
from bench.results import run_folder, write_report
from bench.smtp_load import send_load

SIZE, CONCURRENCY = 4096, 10
STAGES = ("broker", "ingest", "scanner", "decider")


def one(secure: bool, messages: int, warm_up: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-secure-"))
    gateway, ports, sink_dir = start_gateway(folder, secure=secure)
    try:
        wait_connected(folder)
        accepted = send_load(ports["smtp"], warm_up, SIZE, CONCURRENCY).messages
        wait_delivered(sink_dir, accepted)
        parent = processes.up_pid(folder)
        before = processes.usage(parent)
        began = time.monotonic()
        sent = send_load(ports["smtp"], messages, SIZE, CONCURRENCY)
        wait_delivered(sink_dir, accepted + sent.messages)
        seconds = time.monotonic() - began
        after = processes.usage(parent)
        cpu_ms = {stage: round((after[stage]["cpu_s"] - before[stage]["cpu_s"]) * 1000
                               / sent.messages, 2)
                  for stage in after if stage in before}
        return {"secure": secure, "messages": sent.messages, "seconds": round(seconds, 2),
                "msgs_per_s": round(sent.messages / seconds, 1),
                "cpu_ms_per_message": cpu_ms,
                "gateway_cpu_ms_per_message": round(sum(cpu_ms.get(s, 0) for s in STAGES), 2)}
    finally:
        gateway.terminate()
        gateway.wait(timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def mean(runs: list[dict[str, Any]], pick: Any) -> float:
    return round(sum(pick(r) for r in runs) / len(runs), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--warm-up", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs = []
    for _ in range(args.rounds):
        for secure in (False, True):
            runs.append(one(secure, args.messages, args.warm_up))
            print(json.dumps(runs[-1]), flush=True)
    plain = [r for r in runs if not r["secure"]]
    tls = [r for r in runs if r["secure"]]
    rows = ["| backbone | msgs/s | " + " | ".join(f"{s} CPU ms/msg" for s in STAGES)
            + " | all four |", "|---|---|" + "---|" * (len(STAGES) + 1)]
    for name, group in (("plaintext", plain), ("SASL_SSL + ACLs", tls)):
        rows.append(f"| {name} | {mean(group, lambda r: r['msgs_per_s'])} | " + " | ".join(
            str(mean(group, lambda r, s=s: r["cpu_ms_per_message"].get(s, 0)))
            for s in STAGES) + f" | {mean(group, lambda r: r['gateway_cpu_ms_per_message'])} |")
    ratio = mean(tls, lambda r: r["msgs_per_s"]) / mean(plain, lambda r: r["msgs_per_s"])
    cpu = (mean(tls, lambda r: r["gateway_cpu_ms_per_message"])
           / mean(plain, lambda r: r["gateway_cpu_ms_per_message"]))
    summary = (f"secure / plaintext: throughput {ratio:.2f}x, CPU per message {cpu:.2f}x "
               f"({args.rounds} rounds each, {args.messages} messages of {SIZE} bytes, "
               f"{CONCURRENCY} connections)")
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
              "runs": runs, "summary": summary}
    out = run_folder("secure")
    text = "\n".join(rows) + f"\n\n{summary}\n"
    write_report(out, report, f"Secure backbone benchmark, {report['when']}", text)
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
