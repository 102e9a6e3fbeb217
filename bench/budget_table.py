"""The per-message budget (bench/broker_budget.py) as markdown tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _table(head: list[str], columns: list[Mapping[str, float]]) -> list[str]:
    """One row per key of the first column (its order, `total` last); a key another column
    lacks shows as a dash."""
    keys = [k for k in columns[0] if k != "total"] + ["total"]
    rows = [f"| {' | '.join(head)} |", "|---" * len(head) + "|"]
    for key in keys:
        cells = [str(c[key]) if key in c else "-" for c in columns]
        name = f"**{key}**" if key == "total" else key
        rows.append(f"| {name} | {' | '.join(cells)} |")
    return rows


def budget_markdown(report: Mapping[str, Any]) -> str:
    """`report`: measure_budget's (or a report holding it under `budget`)."""
    b = report.get("budget", report)
    idle = b.get("idle")
    lines = [f"{b['messages']} messages of {b.get('size', '?')} bytes over "
             f"{b.get('concurrency', '?')} connections: {b['active_s']} s from the first sent "
             f"to the last delivered ({b['msgs_per_s']} msgs/s); counters read {b['seconds']} s "
             "apart (the stages settled after delivery)", ""]
    head = ["broker requests", "per msg"]
    columns = [b["requests_per_msg"]]
    if idle:
        head += ["per msg net of idle", f"idle per s ({idle['seconds']} s)"]
        columns += [b["requests_per_msg_net"], idle["requests_per_s"]]
    lines += _table(head, columns)
    kinds = ", ".join(f"{k} {v}" for k, v in b["fetch_kinds_per_msg"].items() if k != "total")
    lines += ["", f"Of the fetches per message: {kinds or 'none'} (the broker's own split)"]
    lines += ["", f"Records appended per message: {b['records_per_msg']}; bytes in per message: "
              f"{b['bytes_in_per_msg']}, out: {b['bytes_out_per_msg']}", ""]
    lines += _table(["records appended by topic", "per msg"], [b["records_per_msg_by_topic"]])
    lines += [""]
    lines += _table(["transactions committed", "per msg", "per s"],
                    [b["transactions_per_msg"], b["transactions_per_s"]])
    lines += ["", f"Transactions ended at the broker (EndTxn, commits and aborts) per message: "
              f"{b['end_txn_per_msg']}"]
    lines += [""]
    head = ["CPU ms", "per msg"]
    columns = [b["cpu_ms_per_msg"]]
    if idle:
        head += ["per msg net of idle", "idle ms per s"]
        columns += [b["cpu_ms_per_msg_net"], idle["cpu_ms_per_s"]]
    lines += _table(head, columns)
    if b.get("cpu_ms_per_msg_by_thread"):
        lines += [""]
        lines += _table(["CPU ms by process and thread", "per msg"],
                        [b["cpu_ms_per_msg_by_thread"]])
    lines += ["", f"Broker CPU ms per message from its JVM (JMX ProcessCpuTime): "
              f"{b['broker_cpu_ms_per_msg_jmx']}; from /proc: {b['broker_cpu_ms_per_msg_proc']}"]
    if follower := b.get("follower"):
        lines += ["", f"One more reader of the mail topic (bench/follower.py) read "
                  f"{follower['records']} records ({follower['records_per_msg']} per message) "
                  f"with {follower['fetches_per_msg']} fetches per message:", ""]
        lines += _table(["its CPU", "µs per record", "ms per msg"],
                        [follower["cpu_us_per_record"], follower["cpu_ms_per_msg"]])
    return "\n".join(lines) + "\n"
