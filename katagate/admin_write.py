"""What every admin command that changes the configuration shares: options, the refusal (exit 2,
nothing written), and the one write path (fold, decide, append) with its report."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from katagate.admin import values
from katagate.admin.control_writer import ControlSession
from katagate.admin.errors import InvalidCommand
from katagate.eventlog.settings import KafkaSettings
from katagate.schemas import ControlState, Event

# The command's inputs that do not come from the state: who, when, and the new event's id.
Decide = Callable[[ControlState, dict[str, Any]], Event]
Report = Callable[[Event, ControlState, ControlState], str]
E = TypeVar("E", bound=Event)

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def named_changes(args: argparse.Namespace, options: Iterable[str], example: str,
                  value_of: Callable[[str], object] = str) -> dict[str, object]:
    """The settings a `set` command names: its options, then its NAME=VALUE assignments."""
    changes: dict[str, object] = {n: getattr(args, n) for n in options
                                  if getattr(args, n) is not None}
    for item in args.assignments:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidCommand(f"{item}: expected NAME=VALUE (e.g. {example})")
        if name in changes:
            raise InvalidCommand(f"{name}: given twice")
        changes[name] = value_of(value)
    return changes


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_write_options(parser: argparse.ArgumentParser) -> None:
    add_json_option(parser)
    add_note_option(parser)


def add_note_option(parser: argparse.ArgumentParser) -> None:
    # --actor is the option's old name: it used to set the actor itself, which let anyone name
    # anyone; what it says is now kept as a note beside the actor the system knows.
    parser.add_argument("--note", "--actor", dest="note", default="", metavar="TEXT",
                        help="a free-text note kept with the change in its own field (who "
                             "asked, a ticket); the actor recorded is always cli:<your OS user>")


def cli_actor() -> str:
    """Who acts, as the operating system knows them (the effective user), marked as the CLI:
    `cli:alice`. Never what the caller claims."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry, as in some containers
        name = f"uid{uid}"
    return f"cli:{name}"


def checked_note(note: str) -> str:
    """An empty note, or one line of 1..500 printable characters (InvalidCommand naming
    `note` otherwise)."""
    return note if note == "" else values.line("note", note, 500)


def noted(event: E, note: str) -> E:
    """The event with the caller's note in `actor_note`, validated again as a whole."""
    if not note:
        return event
    return type(event).model_validate({**event.model_dump(), "actor_note": note})


def refuse(args: argparse.Namespace, error: InvalidCommand) -> int:
    print(f"katagate {args.command} {args.action}: {error}", file=sys.stderr)
    return EXIT_INVALID


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2, sort_keys=True))


def commit(args: argparse.Namespace, decide: Decide, report: Report) -> int:
    """Fold the control topic, decide the event, append it; print what was written."""
    actor = cli_actor()
    try:
        values.actor_ref(actor)
        note = checked_note(args.note)  # refused before contacting Kafka
    except InvalidCommand as exc:
        return refuse(args, exc)
    with ControlSession(KafkaSettings(principal="admin")) as session:
        before = session.state
        try:
            event = noted(decide(before, {"actor": actor, "now": datetime.now(UTC),
                                          "event_id": uuid.uuid4()}), note)
        except InvalidCommand as exc:
            return refuse(args, exc)
        after = session.append([event])
    if args.json:
        print_json({"version": after.version, "events": [event.model_dump(mode="json")]})
    else:
        print(report(event, before, after))
    return EXIT_OK
