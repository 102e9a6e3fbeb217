"""The "Against Postfix" section of a benchmark report and its plots (peer.png, cpu.png), from
the rows bench/postfix_peer.py's against() makes: the bare sink, Postfix and katagate at each
level of connections, measured in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SYSTEMS = (("bare_sink", "bare aiosmtpd sink"), ("postfix", "Postfix relay"),
           ("katagate", "katagate"))


def _cpu(groups: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.2f}" for name, ms in groups.items())


def section(report: dict[str, Any]) -> str:
    rows, peer = report["against_postfix"], report["postfix_peer"]
    lines = ["## Against Postfix", "",
             f"Debian's Postfix {peer['postfix_version']} as a relay (defaults; a private "
             "instance), katagate end to end with instant verdicts, and the bare aiosmtpd sink, "
             f"under the same load ({rows[0]['postfix']['messages'] if rows else '?'} messages "
             f"of {peer['size'] // 1024} KB per level, after {peer['warm_up']} of warm-up), "
             "one after the other in this run, never sharing the CPU. Postfix and katagate "
             "deliver to the same program, `katagate sink`; end to end is until the sink holds "
             "every message (the bare sink keeps nothing: accepted is end to end).", "",
             "| connections | bare msgs/s | Postfix msgs/s | katagate msgs/s | katagate ÷ "
             "Postfix | bare 250 p50/p99 ms | Postfix 250 p50/p99 ms | katagate 250 p50/p99 "
             "ms |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, p, k = r["bare_sink"], r["postfix"], r["katagate"]
        lines.append(f"| {r['concurrency']} | {b['end_to_end_msgs_per_s']} | "
                     f"{p['end_to_end_msgs_per_s']} | {k['end_to_end_msgs_per_s']} | "
                     f"{r['katagate_to_postfix']} | {b['p50_ms']}/{b['p99_ms']} | "
                     f"{p['p50_ms']}/{p['p99_ms']} | {k['p50_ms']}/{k['p99_ms']} |")
    lines += ["", "CPU ms per message (katagate: its own processes; the broker, the KATA "
              "emulator and the sink apart):", "",
              "| connections | bare sink | Postfix | katagate |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['concurrency']} | "
                     + " | ".join(_cpu(r[key]["cpu_ms_per_message_groups"])
                                  for key, _ in SYSTEMS) + " |")
    lines += ["", "Accepted msgs/s (the load generator's, while the queue drains): "
              + "; ".join(f"{r['concurrency']} connections: Postfix "
                          f"{r['postfix']['accepted_msgs_per_s']}, katagate "
                          f"{r['katagate']['accepted_msgs_per_s']}" for r in rows), ""]
    return "\n".join(lines)


def _at_ten(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return min(rows, key=lambda r: abs(r["concurrency"] - 10))


def plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["against_postfix"]
    if not rows:
        return []
    levels = [r["concurrency"] for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in SYSTEMS:
        left.plot(levels, [r[key]["end_to_end_msgs_per_s"] for r in rows], "o-", label=label)
        right.plot(levels, [r[key]["p50_ms"] for r in rows], "o-", label=label)
    for axis, title, unit in ((left, "End-to-end throughput", "messages/s"),
                              (right, "250 latency, median", "ms")):
        axis.set_xscale("log")
        axis.set_xticks(levels, [str(c) for c in levels])
        axis.set_xlabel("connections")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.legend()
    right.set_yscale("log")
    figure.tight_layout()
    peer = out / "peer.png"
    figure.savefig(peer, dpi=100)
    plt.close(figure)

    at = _at_ten(rows)
    stacks = {key: sorted(at[key]["cpu_ms_per_message"].items(), key=lambda i: -i[1])
              for key in ("postfix", "katagate")}
    names = sorted({name for stack in stacks.values() for name, _ in stack})
    palette = plt.get_cmap("tab20")
    colours = {name: palette(i % 20) for i, name in enumerate(names)}  # one per process
    tallest = max(sum(ms for _, ms in stack) for stack in stacks.values()) or 1.0
    figure, axis = plt.subplots(figsize=(10, 5))
    for x, stack in enumerate(stacks.values()):
        bottom = 0.0
        for name, ms in stack:
            axis.bar(x, ms, 0.6, bottom=bottom, color=colours[name], label=name)
            if ms > 0.04 * tallest:  # a label where it fits
                axis.text(x, bottom + ms / 2, f"{name} {ms:.2f}", ha="center", va="center",
                          fontsize=7)
            bottom += ms
        axis.text(x, bottom, f"{bottom:.2f}", ha="center", va="bottom")
    axis.set_ylim(0, tallest * 1.12)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axis.legend([unique[n] for n in names], names, fontsize=7, loc="upper left",
                bbox_to_anchor=(1.01, 1))
    axis.set_xticks([0, 1], ["Postfix relay + sink", "katagate + broker, emulator, sink"])
    axis.set_ylabel("CPU ms per message")
    axis.set_title(f"CPU per message by process, {at['concurrency']} connections, 4 KB")
    figure.tight_layout()
    cpu = out / "cpu.png"
    figure.savefig(cpu, dpi=100)
    plt.close(figure)
    return [peer, cpu]
