"""`katagate ingest run`: the SMTP edge, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
from typing import Any

from katagate.eventlog.settings import KafkaSettings
from katagate.log_output import add_options as add_log_options
from katagate.process import stop_on_signals


def register(commands: Any) -> None:
    parser = commands.add_parser("ingest", help="run the SMTP edge (ingest stage)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run", help="accept mail until SIGTERM; settings from KATAGATE_INGEST_* variables"
    )
    run.add_argument("--host", help="listen address (overrides KATAGATE_INGEST_HOST)")
    run.add_argument("--port", type=int, help="listen port (overrides KATAGATE_INGEST_PORT)")
    add_log_options(run)
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    # Imported here: each process registers only its own stage's metrics.
    from katagate.ingest.run import run_ingest
    from katagate.ingest.settings import IngestSettings
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = IngestSettings(**overrides)
    stop = stop_on_signals(args)
    run_ingest(KafkaSettings(), settings, stop)
    return 0
