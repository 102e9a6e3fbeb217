"""`katagate` and its subcommands. Exit codes: 0 done, 1 failed, 2 bad usage."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version

from katagate import (
    acls_cmd,
    audit_cmd,
    backup_cmd,
    broker_cmd,
    cluster_cmd,
    config_cmd,
    console_cmd,
    dashboard_cmd,
    decider_cmd,
    emulator_cmd,
    ingest_cmd,
    kata_cmd,
    messages_cmd,
    notifications_cmd,
    projector_cmd,
    quarantine_cmd,
    queue_cmd,
    rules_cmd,
    scanner_cmd,
    schemas_cmd,
    settings_cmd,
    sink_cmd,
    topics_cmd,
    up_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="katagate",
        description="An event-sourced email security gateway with KATA protection, on Kafka.",
    )
    # The installed distribution's version (pyproject.toml), not a copy that could drift from it.
    parser.add_argument("--version", action="version", version=f"katagate {version('katagate')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        up_cmd, broker_cmd, cluster_cmd, topics_cmd, schemas_cmd, settings_cmd, kata_cmd, rules_cmd,
        quarantine_cmd, messages_cmd, backup_cmd, queue_cmd, ingest_cmd, scanner_cmd,
        decider_cmd, projector_cmd, console_cmd, emulator_cmd, sink_cmd, audit_cmd,
        dashboard_cmd, acls_cmd, config_cmd, notifications_cmd,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`katagate config show | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        from confluent_kafka import KafkaException

        from katagate.schemas.errors import KatagateError

        if isinstance(exc, KafkaException):
            # The broker cannot be reached or refused the request: one line, not a traceback.
            print(f"katagate {args.command}: Kafka: {exc.args[0]}", file=sys.stderr)
            return 1
        if not isinstance(exc, KatagateError):
            raise
        from katagate.eventlog.config_file import ConfigFileError

        if isinstance(exc, ConfigFileError):
            # A bad configuration file is bad usage: exit 2, each problem on its line.
            for line in str(exc).splitlines():
                print(f"katagate {args.command}: {line}", file=sys.stderr)
            return 2
        print(f"katagate {args.command}: {exc}", file=sys.stderr)
        return 1
    return code
