"""`katagate scanner`: run one scanner instance (the KATA connector) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
from typing import Any

from katagate.eventlog.settings import KafkaSettings
from katagate.log_output import add_options as add_log_options
from katagate.process import stop_on_signals
from katagate.scanner.identity import load_or_create
from katagate.scanner.settings import ScannerSettings


def register(commands: Any) -> None:
    parser = commands.add_parser("scanner", help="run the KATA connector (scanner stage)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run until SIGTERM")
    add_log_options(run)
    run.set_defaults(run=_run)
    actions.add_parser(
        "identity", help="print the sensor id and its public key fingerprint (made if missing)"
    ).set_defaults(run=_identity)


def _run(args: argparse.Namespace) -> int:
    # Imported here: each process registers only its own stage's metrics.
    from katagate.scanner.run import run_scanner
    stop = stop_on_signals(args)
    run_scanner(KafkaSettings(), ScannerSettings(), stop)
    return 0


def _identity(_args: argparse.Namespace) -> int:
    identity = load_or_create(ScannerSettings().sensor_dir)
    print(f"sensor id:                   {identity.sensor_id}")
    print(f"KSMG public key fingerprint: {identity.fingerprint}")
    return 0
