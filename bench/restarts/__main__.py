"""Does a stop or a crash make the gateway deliver a message twice, or lose one? The real
gateway (`katagate up` in a state folder of its own, its own broker, the KATA emulator
accepting, the demo sink as the next hop), every message counted at the sink by Message-ID.

    python -m bench.restarts [--mode graceful|kill|both] [--rounds N] [--messages N]
                             [--connections N] [--stop-after-s S] [--stages a,b] [--quick]
                             [--out FILE.jsonl]

graceful (10 rounds by default): each round sends --messages of 4 KB over --connections and
keeps which got a 250; --stop-after-s after the last 250, while the decider is still
delivering the backlog, `katagate down`; `katagate up` again on the same folder; then until
every accepted message arrived (or --timeout-s). The restarted gateway serves the next round:
rounds + 1 starts in all.

kill (10 rounds per stage by default): senders that retry like an MTA send --messages; once a
third are accepted the stage's process under `up` is killed (-9) and the senders go on. What
`up` does is reported: "gateway stopped" (it stops everything when a child dies; the round
starts it again and goes on), "restarted" (it started the child again), or "nothing".

How a copy is judged. lost: got a 250, never arrived. duplicated: arrived more often than it
may. A message that got its 250 is never sent again, so it may arrive once; a second copy is
the gateway's doing. But when ingest dies, a sender's connection breaks: an attempt that broke
after the DATA command with no reply may have been taken (the server committed it, the reply
never came: SMTP's duplicate window, RFC 1047), and the sender, like any MTA, sends it again
with the same Message-ID. Each such attempt may add one copy, counted as `resent_copies`, not
as duplicated; a copy beyond those is duplicated. An attempt refused with a reply (421, 451)
was not taken: it allows no copy. The window counted from the DATA command rather than from
the final dot is slightly generous (a break while the 4 KB were being written allows a copy
that cannot exist); it can only hide a duplicate of that very message.

Prints a table per mode and each `up` start's wall time (the first, then restarts); writes a
JSON line per round (and one per round whose figures changed by the end of the run: a copy
that came late) to --out (default bench/results/restarts-<time>/rounds.jsonl).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any, TextIO

from bench import processes
from bench.restarts import rounds
from bench.restarts.gateway import Gateway
from bench.results import run_folder
from bench.sink_count import SinkArrivals

COLUMNS = ("rounds", "accepted", "arrived", "lost", "duplicated", "max duplicated in a round",
           "extra copies", "resent copies", "pending at stop (min)", "gateway stopped")


def summary(rows: list[dict[str, Any]]) -> list[Any]:
    """One table row over a mode's (or a stage's) rounds."""
    stopped = sum(1 for r in rows if r.get("up_did") == "gateway stopped")
    return [len(rows), sum(r["accepted"] for r in rows), sum(r["arrived"] for r in rows),
            sum(r["lost"] for r in rows), sum(r["duplicated"] for r in rows),
            max((r["duplicated"] for r in rows), default=0),
            sum(r["extra_copies"] for r in rows), sum(r["resent_copies"] for r in rows),
            min((r["pending_at_stop"] for r in rows), default=0),
            stopped if rows and rows[0]["mode"] == "kill" else "-"]


def table(rows: list[dict[str, Any]]) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("stage") or row["mode"], []).append(row)
    lines = ["| | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, group in groups.items():
        lines.append(f"| {name} | " + " | ".join(str(v) for v in summary(group)) + " |")
    return "\n".join(lines)


def starts_line(starts_s: list[float]) -> str:
    restarts = starts_s[1:]
    return (f"`katagate up` until up: first start {starts_s[0]} s; restarts ({len(restarts)}): "
            + (f"min {min(restarts)} / median {statistics.median(restarts)} / max "
               f"{max(restarts)} s" if restarts else "none"))


def run(args: argparse.Namespace, out: TextIO) -> list[dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-restarts-"))
    gateway = Gateway(folder)
    arrivals = SinkArrivals(gateway.sink_dir)
    done: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def keep(result: tuple[dict[str, Any], dict[str, Any]]) -> None:
        done.append(result)
        out.write(json.dumps(result[0]) + "\n")
        out.flush()
        print(json.dumps(result[0]), flush=True)

    try:
        gateway.start()
        if args.mode in ("graceful", "both"):
            for number in range(args.rounds):
                keep(rounds.graceful(gateway, arrivals, number, args.messages,
                                     args.connections, args.stop_after_s, args.timeout_s))
        if args.mode in ("kill", "both"):
            for stage in args.stages:
                for number in range(args.rounds):
                    keep(rounds.kill(gateway, arrivals, stage, number, args.messages,
                                     args.connections, args.timeout_s))
        arrivals.refresh()
        final = []
        for row, basis in done:
            now = {**row, **rounds.recount(arrivals, basis)}
            if now != row:
                out.write(json.dumps({**now, "late_copies": True}) + "\n")
            final.append(now)
        out.write(json.dumps({"up_starts_s": gateway.starts_s}) + "\n")
        print(starts_line(gateway.starts_s))
        return final
    finally:
        gateway.close()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("graceful", "kill", "both"), default="graceful")
    parser.add_argument("--rounds", type=int, help="per mode, and per stage (default 10)")
    parser.add_argument("--messages", type=int, help="per round (default 1500)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--stop-after-s", type=float, default=3.0,
                        help="graceful: seconds from the last 250 to `katagate down`")
    parser.add_argument("--stages", default=",".join(processes.STAGES),
                        help="kill: comma-separated, of " + ", ".join(processes.STAGES))
    parser.add_argument("--timeout-s", type=float, default=300.0,
                        help="at most this long for every accepted message to arrive")
    parser.add_argument("--quick", action="store_true",
                        help="1 round of 200 messages (kill: the decider only): checks it works")
    parser.add_argument("--out", type=Path, help="JSON lines file (default: bench/results/)")
    args = parser.parse_args(argv)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.quick:
        args.rounds = args.rounds or 1
        args.messages = args.messages or 200
        if args.stages == list(processes.STAGES):
            args.stages = ["decider"]
    args.rounds, args.messages = args.rounds or 10, args.messages or 1500
    if unknown := sorted(set(args.stages) - set(processes.STAGES)):
        parser.error(f"--stages: {', '.join(unknown)} is none of {', '.join(processes.STAGES)}")
    if args.rounds < 1 or args.messages < args.connections or args.connections < 1:
        parser.error("--rounds and --connections must be 1 or more, --messages at least "
                     "--connections")
    path = args.out or run_folder("restarts") / "rounds.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        rows = run(args, out)
    print(table(rows))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
