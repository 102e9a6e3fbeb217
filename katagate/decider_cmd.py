"""`katagate decider run`: admission (while elected), decisions and apply, until SIGTERM."""

from __future__ import annotations

import argparse
from typing import Any

from katagate.eventlog.settings import KafkaSettings
from katagate.log_output import add_options as add_log_options
from katagate.process import settings_or_exit, stop_on_signals


def register(commands: Any) -> None:
    parser = commands.add_parser("decider", help="run the decider (admission, decisions, apply)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run until SIGTERM")
    add_log_options(run)
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    # Imported here: each process registers only its own stage's metrics.
    from katagate.decider.run import run_decider
    from katagate.decider.settings import DeciderSettings
    # A bad setting (a CA file that cannot be read, ...) is one line naming it, before anything
    # starts.
    settings = settings_or_exit(DeciderSettings, "decider")
    stop = stop_on_signals(args)
    run_decider(KafkaSettings(), settings, stop)
    return 0
