"""The verdict cache, measured: a burst of N identical messages through the real gateway
(`katagate up`, the KATA emulator with a scan latency, the demo sink), once with the cache off
(`verdict_cache_ttl_s` 0) and once on (3600 s), each on a fresh gateway:

- Central Node submissions, counted at the emulator (`kata_emulator scans count`);
- end-to-end time: from the burst's first message sent to its last delivered at the sink;
- the scanner's cache hits (`katagate_kata_verdict_cache_hits_total`).

    python -m bench verdict-cache [--messages 500] [--latency 2] [--concurrency 10]
                                  [--node-limit N]

Writes bench/results/verdict-cache-<time>/report.json and report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import machine
from bench.mailpath import ROOT, delivered, start_gateway, wait_connected, wait_delivered
from bench.results import RESULTS
from bench.smtp_load import send_same


def _emulator(folder: Path, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "katagate.kata_emulator", *args, "--state",
                           str(folder / "state" / "kata")], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=60).stdout


def _submissions(folder: Path) -> int:
    return sum(json.loads(_emulator(folder, "scans", "count")).values())


def _cache_hits(metrics_port: int) -> float:
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("katagate_kata_verdict_cache_hits_total "))


def _set_ttl(ports: dict[str, int], ttl_s: int) -> None:
    from katagate.schemas import KataSettings

    if ttl_s == KataSettings().verdict_cache_ttl_s:
        return  # the default in force: setting it again is refused as no change
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['broker']}",
           "KATAGATE_TOPIC_PREFIX": "bench"}
    subprocess.run([sys.executable, "-m", "katagate", "settings", "set",
                    "--verdict-cache-ttl", str(ttl_s)], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)


def burst(ttl_s: int, messages: int, latency_s: float, concurrency: int,
          node_limit: int) -> dict[str, Any]:
    """One fresh gateway, the cache's time-to-live set, then the burst."""
    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-cache-"))
    gateway, ports, sink_dir = start_gateway(folder)
    try:
        wait_connected(folder)
        _set_ttl(ports, ttl_s)
        # Every scan takes `latency_s`, as a real sandbox takes minutes; the node takes at most
        # `node_limit` scans in processing (past it: 429 with Retry-After 60, as KATA does).
        _emulator(folder, "faults", "set", "--latency", str(latency_s),
                  "--concurrency-limit", str(node_limit))
        time.sleep(2)  # the settings change reaches the scanner
        before, hits0, start = _submissions(folder), _cache_hits(ports["metrics"] + 1), \
            delivered(sink_dir)
        data = (b"From: news@example.org\r\nTo: rcpt@example.net\r\nSubject: the same\r\n"
                b"Message-ID: <same@example.org>\r\n\r\n"
                + b"The same attachment for every recipient. 0123456789\r\n" * 80)
        began = time.monotonic()
        sent = send_same(ports["smtp"], messages, data, concurrency)
        waited = wait_delivered(sink_dir, start + sent.messages)
        seconds = time.monotonic() - began
        return {
            "verdict_cache_ttl_s": ttl_s, "messages": sent.messages, "refused": sent.refused,
            "size": len(data), "concurrency": concurrency, "scan_latency_s": latency_s,
            "node_concurrency_limit": node_limit,
            "central_node_submissions": _submissions(folder) - before,
            "cache_hits": _cache_hits(ports["metrics"] + 1) - hits0,
            "delivered": delivered(sink_dir) - start,
            "ingest_s": round(sent.seconds, 2), "end_to_end_s": round(seconds, 2),
            "drain_after_ingest_s": waited,
        }
    finally:
        gateway.terminate()
        gateway.wait(timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def markdown(report: dict[str, Any]) -> str:
    off, on = report["without_cache"], report["with_cache"]
    rows = [f"| {label} | {r['messages']} | {r['central_node_submissions']} | "
            f"{r['cache_hits']:.0f} | {r['end_to_end_s']} | {r['delivered']} |"
            for label, r in (("off (ttl 0)", off), ("on (ttl 3600 s)", on))]
    return "\n".join([
        "# Verdict cache: a burst of identical messages", "",
        f"{report['when']}; `{json.dumps(report['machine'])}`", "",
        f"{on['messages']} identical messages of {on['size']} bytes, {on['concurrency']} SMTP "
        f"connections; every KATA scan takes {on['scan_latency_s']} s (emulator latency), at "
        f"most {on['node_concurrency_limit']} in processing at the node.", "",
        "| cache | messages | Central Node submissions | cache hits | end to end (s) "
        "| delivered |", "|---|---|---|---|---|---|", *rows, "",
        f"Submissions: {off['central_node_submissions']} without, "
        f"{on['central_node_submissions']} with the cache; end to end "
        f"{round(off['end_to_end_s'] / on['end_to_end_s'], 2) if on['end_to_end_s'] else '-'}"
        "x faster with it.", ""])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench verdict-cache",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds per KATA scan")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--node-limit", type=int, default=1_000_000,
                        help="scans the emulated Central Node takes in processing at once (its "
                        "own default is 100; past it, 429 and Retry-After 60)")
    parser.add_argument("--out", type=Path, help="results folder")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine()}
    common = (args.messages, args.latency, args.concurrency, args.node_limit)
    report["without_cache"] = burst(0, *common)
    print(json.dumps(report["without_cache"]), flush=True)
    report["with_cache"] = burst(3600, *common)
    print(json.dumps(report["with_cache"]), flush=True)
    out = args.out or RESULTS / f"verdict-cache-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (out / "report.md").write_text(text)
    print(text)
    print(f"written to {out}")
    return 0
