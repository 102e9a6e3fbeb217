"""`katagate quarantine list|release|delete`: the product's Message queue → KATA Quarantine —
the messages waiting for a verdict, "Send now" (release) and "Delete".

The list is the projector's (sender, recipients, subject, time left; the filters and sorts of
every listing). What may be acted on is decided by the ledger itself, folded from
`katagate.quarantine`: several ids are checked first and, if any is not waiting, nothing is
written; otherwise their events go in one transaction."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from katagate.admin.control_reader import read_folded
from katagate.admin.errors import InvalidCommand
from katagate.admin.quarantine import MAX_SELECTION, Held, evolve_waiting, selection
from katagate.admin_read import add_filter_options, guarded, page_footer, query, reader, table
from katagate.admin_read import when as instant
from katagate.admin_write import (
    EXIT_INVALID,
    EXIT_OK,
    add_note_option,
    checked_note,
    cli_actor,
    noted,
    print_json,
)
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.messages_cmd import shown_sender

SORT = ("sort", "sort", "received_at (the default), size, deadline_at or from")
ROWS = (("received (UTC)", "received_at", 19), ("id", "message_id", 26),
        ("from", "envelope_from", 26), ("to", "recipients", 26), ("subject", "subject", 24),
        ("size", "size", 9), ("rule", "rule_id", 12), ("time left", "deadline_at", 9))


def register(commands: Any) -> None:
    parser = commands.add_parser("quarantine", help="the KATA Quarantine: list, send now, delete")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="messages waiting for a verdict, with the "
                                              "filters of every listing")
    add_filter_options(listing, SORT)
    listing.set_defaults(run=guarded(_list))
    for name, what in (("release", "send messages on now (Send now); their scans go on"),
                       ("delete", "delete waiting messages: discarded, never delivered")):
        action = actions.add_parser(name, help=what)
        action.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID",
                            help="ids from '250 2.0.0 Ok: queued as ...' or `quarantine list`; "
                                 f"at most {MAX_SELECTION}, all waiting, else none is acted on")
        action.add_argument("--comment", default="", help="why (kept in the audit log)")
        add_note_option(action)
        action.set_defaults(run=_act)


def time_left(now: datetime) -> Callable[[object], str]:
    """A deadline as the time left before the response timeout, to the minute past an hour."""
    def shown(value: object) -> str:
        if not value:
            return "-"
        left = int((datetime.fromisoformat(str(value)) - now).total_seconds())
        if left <= 0:
            return "due"
        hours, rest = divmod(left, 3600)
        return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
    return shown


def _list(args: argparse.Namespace) -> int:
    document = reader(args).get("/quarantine/messages", query(args, SORT))
    if args.json:
        print_json(document)
        return EXIT_OK
    rows = document.get("messages") or []
    if not rows and not document.get("next"):
        print("No message waits in the KATA Quarantine" + (
            " that matches." if any(query(args, SORT).values()) else "."))
        return EXIT_OK
    table(rows, ROWS, {"received_at": instant, "envelope_from": shown_sender,
                       "deadline_at": time_left(datetime.now(UTC))})
    page_footer(document, "messages", "message(s) waiting")
    return EXIT_OK


def _held(settings: KafkaSettings) -> Held:
    return read_folded(settings, TopicNames(settings.topic_prefix).quarantine, {},
                       evolve_waiting)


def _act(args: argparse.Namespace) -> int:
    settings = KafkaSettings(principal="admin")
    try:
        events = selection("send-now" if args.action == "release" else "delete",
                           args.message_ids, cli_actor(), args.comment, datetime.now(UTC),
                           lambda: _held(settings))
        note = checked_note(args.note)
    except InvalidCommand as exc:
        print(f"katagate quarantine {args.action}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    producer = TransactionalProducer(
        settings, PRINCIPALS["admin"].transactional_id(settings.topic_prefix, "admin-quarantine"))
    try:
        producer.begin()
        mail = TopicNames(settings.topic_prefix).mail
        producer.produce([Outgoing.event(mail, noted(event, note)) for event in events])
        producer.commit()
    finally:
        producer.close()
    done = "send-now" if args.action == "release" else "deletion"
    for event in events:
        print(f"{done} of {getattr(event, 'message_id', '')} recorded")
    return EXIT_OK
