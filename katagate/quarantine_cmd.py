"""`katagate quarantine list|release|delete`: the product's Message queue → KATA Quarantine —
the messages waiting for a verdict, "Send now" (release) and "Delete"."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from admin.central_node import InvalidCommand
from admin.control_reader import read_folded
from admin.quarantine import (
    Held,
    evolve_waiting,
    forced_delete,
    forced_release,
    oldest_first,
    refuse_unless_waiting,
)
from eventlog.principals import PRINCIPALS
from eventlog.producer import TransactionalProducer
from eventlog.records import Outgoing
from eventlog.settings import KafkaSettings
from eventlog.topics import TopicNames
from katagate.admin_write import (
    EXIT_INVALID,
    EXIT_OK,
    add_note_option,
    checked_note,
    cli_actor,
    noted,
    print_json,
)


def register(commands: Any) -> None:
    parser = commands.add_parser("quarantine", help="the KATA Quarantine: list, send now, delete")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="messages waiting for a verdict, oldest first")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_list)
    for name, what in (("release", "send a message on now (Send now); its scan goes on"),
                       ("delete", "delete a waiting message: it is discarded, never delivered")):
        action = actions.add_parser(name, help=what)
        action.add_argument("message_id", help="the id from '250 2.0.0 Ok: queued as ...'")
        action.add_argument("--comment", default="", help="why (kept in the audit log)")
        add_note_option(action)
        action.set_defaults(run=_act)


def _held(settings: KafkaSettings) -> Held:
    return read_folded(settings, TopicNames(settings.topic_prefix).quarantine, {},
                       evolve_waiting)


def _list(args: argparse.Namespace) -> int:
    messages = oldest_first(_held(KafkaSettings(principal="admin")))
    if args.json:
        print_json({"messages": [{"message_id": w.message_id, "size": w.size,
                                  "rule_id": w.rule_id,
                                  "admitted_at": w.admitted_at.isoformat(),
                                  "deadline_at": w.deadline_at.isoformat()}
                                 for w in messages]})
        return EXIT_OK
    if not messages:
        print("The KATA Quarantine is empty.")
        return EXIT_OK
    print(f"{'message id':<28} {'size':>10}  {'rule':<16} {'admitted (UTC)':<20} waits until")
    for w in messages:
        print(f"{w.message_id:<28} {w.size:>10}  {w.rule_id or 'default':<16} "
              f"{w.admitted_at:%Y-%m-%d %H:%M:%S}  {w.deadline_at:%Y-%m-%d %H:%M:%S}")
    print(f"{len(messages)} message(s), {sum(w.size for w in messages)} bytes")
    return EXIT_OK


def _act(args: argparse.Namespace) -> int:
    make = forced_release if args.action == "release" else forced_delete
    try:
        event = noted(make(args.message_id, cli_actor(), args.comment, datetime.now(UTC)),
                      checked_note(args.note))
    except InvalidCommand as exc:
        return _refuse(args, exc)
    settings = KafkaSettings(principal="admin")
    try:
        refuse_unless_waiting(_held(settings), args.message_id)
    except InvalidCommand as exc:
        return _refuse(args, exc)
    producer = TransactionalProducer(
        settings, PRINCIPALS["admin"].transactional_id(settings.topic_prefix, "admin-quarantine"))
    try:
        producer.begin()
        producer.produce([Outgoing.event(TopicNames(settings.topic_prefix).mail, event)])
        producer.commit()
    finally:
        producer.close()
    done = "send-now" if args.action == "release" else "deletion"
    print(f"{done} of {args.message_id} recorded")
    return EXIT_OK


def _refuse(args: argparse.Namespace, error: InvalidCommand) -> int:
    print(f"katagate quarantine {args.action}: {error}", file=sys.stderr)
    return EXIT_INVALID
