"""docs/SCALING.md's sizing section from one benchmark run: messages/s per core of each
katagate process and of the broker, from the per-message budget (bench/broker_budget.py, 4 KB
at 10 connections on a warmed gateway), and the cores 100, 1,000 and 10,000 messages/s would
take, beside Postfix's figure from the same run (bench/postfix_peer.py). Pure: the report in,
markdown out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RATES = (100, 1_000, 10_000)
# The generated section's bounds in docs/SCALING.md; the rest of the page is written by hand.
BEGIN, END = "<!-- sizing: python -m bench --write-docs -->", "<!-- /sizing -->"
# What an operator sizes: katagate's own processes and the broker. The KATA emulator stands in
# for the Central Node (another machine) and the sink for the next hop.
PARTS = ("ingest", "scanner", "decider", "projector", "audit", "console", "broker")


def _row(name: str, ms: float) -> dict[str, Any]:
    return {"part": name, "cpu_ms_per_msg": round(ms, 2),
            "msgs_per_s_per_core": round(1000 / ms) if ms > 0 else None,
            "cores": {rate: round(rate * ms / 1000, 2) for rate in RATES}}


def sizing(budget: Mapping[str, Any], postfix: Mapping[str, Any] | None) -> dict[str, Any]:
    """Rows per part, katagate's total, and Postfix's (its own processes, without the sink).
    CPU per message net of the idle background where the budget measured it: a gateway's
    background does not grow with its traffic."""
    cpu = budget.get("cpu_ms_per_msg_net") or budget["cpu_ms_per_msg"]
    parts = [_row(p, max(float(cpu.get(p, 0.0)), 0.0)) for p in PARTS if p in cpu]
    out: dict[str, Any] = {
        "messages_per_s_measured": budget.get("msgs_per_s"),
        "parts": parts,
        "katagate": _row("katagate (all of the above)", sum(r["cpu_ms_per_msg"] for r in parts)),
    }
    if postfix is not None:
        groups = postfix["cpu_ms_per_message_groups"]
        out["postfix"] = _row("Postfix relay", sum(v for k, v in groups.items() if k != "sink"))
        out["postfix_concurrency"] = postfix["concurrency"]
    return out


def _line(row: Mapping[str, Any]) -> str:
    cores = " | ".join(f"{row['cores'][rate]}" for rate in RATES)
    per_core = row["msgs_per_s_per_core"] or "-"  # no measurable cost
    return (f"| {row['part']} | {row['cpu_ms_per_msg']} | {per_core} | "
            f"{cores} |")


def scaling_markdown(report: Mapping[str, Any]) -> str:
    """`report`: the suite's (python -m bench): its mail path's budget and its Postfix rows."""
    budget = report["mail_path"]["budget"]
    rows = report["postfix_peer"]["postfix"] if "postfix_peer" in report else []
    postfix = min(rows, key=lambda r: abs(r["concurrency"] - 10)) if rows else None
    sized = sizing(budget, postfix)
    head = " | ".join(f"cores at {rate:,} msgs/s" for rate in RATES)
    lines = [
        "## Sizing from the per-message budget", "",
        f"From the benchmark run of {report.get('when')} on "
        f"`{report.get('machine', {}).get('cpu', 'this machine')}` "
        f"({report.get('machine', {}).get('cores', '?')} cores): CPU per message of each "
        f"process at {sized['messages_per_s_measured']} messages/s (4 KB, 10 connections, "
        "every message scanned, instant verdicts), net of what each spends idle; cores are "
        "that CPU times the rate. Written by `python -m bench --write-docs` (bench/sizing.py); "
        "the run's other figures are in docs/PERFORMANCE.md.", "",
        f"| part | CPU ms per message | messages/s per core | {head} |",
        "|---|---|---|" + "---|" * len(RATES)]
    lines += [_line(r) for r in sized["parts"]]
    lines.append(_line(sized["katagate"]))
    if "postfix" in sized:
        lines.append(_line(sized["postfix"]))
        ratio = (sized["katagate"]["cpu_ms_per_msg"] / sized["postfix"]["cpu_ms_per_msg"]
                 if sized["postfix"]["cpu_ms_per_msg"] else None)
        lines += ["", f"katagate needs {ratio:.1f}x the CPU of a Postfix relay for the same "
                  f"mail (Postfix at {sized['postfix_concurrency']} connections, same run)."
                  if ratio else ""]
    lines += [
        "", "How to read it:", "",
        "- Linear in the rate: measured on one machine at one rate. The broker's and the "
        "stages' cost per message falls as load grows (a transaction and a fetch carry more "
        "messages), so the higher rows are an upper bound for the stages.",
        "- The broker here is one node without replication. A production cluster writes each "
        "record to three replicas: plan the broker row about three times over, spread over "
        "its nodes, and give Kafka its own machines above about 1,000 messages/s.",
        "- Stages scale out by instances (partitions of `katagate.mail`: 6 by default; more "
        "partitions for more instances). The quarantine's single writer (admission, inside "
        "the decider) does not: its share of the decider's CPU is the ceiling of one core.",
        "- Not included: the KATA Central Node, the next hop, TLS on the broker's listeners "
        "(the `--secure` deployment; see bench/secure.py for its cost), and Backup copies.",
        ""]
    return "\n".join(lines)


def with_section(page: str, section: str) -> str:
    """`page` with its generated section replaced (or, the first time, put before the
    estimate that was written by hand)."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    if BEGIN in page and END in page:
        head, rest = page.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    anchor = "## Estimate for"
    if anchor in page:
        head, rest = page.split(anchor, 1)
        return f"{head}{block}\n\n{anchor}{rest}"
    return f"{page.rstrip()}\n\n{block}\n"
