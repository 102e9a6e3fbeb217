"""`python -m demo_sink` / `katagate sink run`: run the demo next-hop MTA in the foreground.

Exit codes: 0 stopped by SIGINT/SIGTERM, 1 could not listen, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from katagate.demo_sink.server import Faults, serve


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=_port, default=2525, help="0 picks a free port")
    parser.add_argument("--dir", type=Path, required=True, metavar="DIR",
                        help="folder for <timestamp>-<n>.eml and .json files (created)")
    parser.add_argument("--fail-rate", type=_rate, default=0.0, metavar="X",
                        help="share of messages answered 451 after the data (0..1)")
    parser.add_argument("--reject-rcpt", action="append", default=[], metavar="PATTERN",
                        help="answer 550 to recipients matching this glob (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the --fail-rate draws")


def run(args: argparse.Namespace) -> int:
    faults = Faults(args.fail_rate, tuple(args.reject_rcpt), args.seed)
    try:
        serve(args.host, args.port, args.dir, faults, out=lambda line: print(line, flush=True))
    except OSError as exc:
        print(f"demo sink: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_sink",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    add_options(parser)
    return run(parser.parse_args(argv))


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be in 0-65535, not {text!r}")
    return int(text)


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"--fail-rate must be a number in 0..1, not {text!r}")
    return rate
