"""What every admin command that changes the configuration shares: options, the refusal (exit 2,
nothing written), and the one write path (fold, decide, append) with its report."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from admin import values
from admin.control_writer import ControlSession
from admin.errors import InvalidCommand
from eventlog.settings import KafkaSettings
from schemas import ControlState, Event

# The command's inputs that do not come from the state: who, when, and the new event's id.
Decide = Callable[[ControlState, dict[str, Any]], Event]
Report = Callable[[Event, ControlState, ControlState], str]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_write_options(parser: argparse.ArgumentParser) -> None:
    add_json_option(parser)
    parser.add_argument("--actor", default=getpass.getuser(),
                        help="who makes the change, recorded in the event (default: you)")


def refuse(args: argparse.Namespace, error: InvalidCommand) -> int:
    print(f"katagate {args.command} {args.action}: {error}", file=sys.stderr)
    return EXIT_INVALID


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2, sort_keys=True))


def commit(args: argparse.Namespace, decide: Decide, report: Report) -> int:
    """Fold the control topic, decide the event, append it; print what was written."""
    try:
        values.actor_ref(args.actor)  # refuse a bad --actor before contacting Kafka
    except InvalidCommand as exc:
        return refuse(args, exc)
    with ControlSession(KafkaSettings(principal="admin")) as session:
        before = session.state
        try:
            event = decide(before, {"actor": args.actor, "now": datetime.now(UTC),
                                    "event_id": uuid.uuid4()})
        except InvalidCommand as exc:
            return refuse(args, exc)
        after = session.append([event])
    if args.json:
        print_json({"version": after.version, "events": [event.model_dump(mode="json")]})
    else:
        print(report(event, before, after))
    return EXIT_OK
