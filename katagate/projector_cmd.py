"""`katagate projector run|replay`: the live projections over HTTP, and the audit replay."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventlog.settings import KafkaSettings
from katagate.process import stop_on_signals


def register(commands: Any) -> None:
    parser = commands.add_parser("projector", help="views rebuilt from the log; the audit replay")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="fold the log live and serve the views over HTTP")
    run.add_argument("--port", type=int, help="HTTP port (default 8080; 0: a free port)")
    run.add_argument("--state-dir", type=Path, help="where the snapshot is kept")
    run.add_argument("--rebuild", action="store_true",
                     help="ignore the snapshot: read every topic from offset 0")
    run.set_defaults(run=_run)
    add_replay(actions)


def add_replay(actions: Any) -> None:
    """`replay`, under `projector` and, as the auditor looks for it, under `audit`."""
    replay = actions.add_parser("replay", help="rebuild every projection from offset 0")
    bound = replay.add_mutually_exclusive_group()
    bound.add_argument("--until-offset", type=_offset, metavar="N",
                       help="read each partition up to (not including) offset N")
    bound.add_argument("--as-of", type=iso_instant, metavar="ISO-TIME",
                       help="the state as of this instant (records stamped up to it)")
    replay.add_argument("--out", type=Path, metavar="DIR",
                        help="write connection.json, quarantine.json, counters.json, timelines "
                             "and positions.json here (default: print the views)")
    replay.add_argument("--timelines", choices=("jsonl", "csv"), default="jsonl",
                        help="format of the timelines file (default jsonl)")
    replay.set_defaults(run=_replay)


def _offset(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an offset (an integer >= 0)")
    return int(text)


def iso_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +00:00)")
    return value.astimezone(UTC)


def _run(args: argparse.Namespace) -> int:
    from projector.run import run_projector
    from projector.settings import ProjectorSettings

    overrides: dict[str, Any] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    if args.rebuild:
        overrides["rebuild"] = True
    settings = ProjectorSettings(**overrides)
    stop = stop_on_signals()
    run_projector(KafkaSettings(), settings, stop)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from projector.replay import print_views, replay, write_outputs

    result = replay(KafkaSettings(), until_offset=args.until_offset, as_of=args.as_of,
                    progress=sys.stderr)
    if args.out is not None:
        for path in write_outputs(result, args.out, args.timelines):
            print(path)
    else:
        print_views(result)
    print(f"replayed {result.records} records in {result.seconds:.2f} s "
          f"({result.rate:,.0f} events/s)", file=sys.stderr)
    return 0
