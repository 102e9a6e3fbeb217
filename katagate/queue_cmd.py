"""`katagate queue list|retry|bounce|delete`: the delivery queue — messages waiting for a retry
at the next hop, with the last reply and the next attempt — and the administrator's actions on
one: try now, return to its sender now (a DSN), delete. Rows come from the projector
(`GET /queue/messages`); each action is a `queue.action_requested` event with the actor."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from katagate.admin.delivery_queue import queue_action, refuse_unless_queued
from katagate.admin.errors import NotFound
from katagate.admin_read import (
    add_filter_options,
    add_projector_options,
    guarded,
    page_footer,
    query,
    reader,
    record,
    table,
    when,
)
from katagate.admin_write import (
    EXIT_OK,
    add_note_option,
    checked_note,
    cli_actor,
    noted,
    print_json,
)
from katagate.messages_cmd import shown_sender

ROWS = (("received (UTC)", "received_at", 19), ("id", "message_id", 26),
        ("from", "envelope_from", 26), ("to", "recipients", 26),
        ("attempts", "attempts", 8), ("next attempt", "next_attempt_at", 19),
        ("last reply", "last_reply", 60))
WHAT = {"retry": "try delivering it now",
        "bounce": "return it to its sender now (a DSN), as a delivery that failed for good",
        "delete": "delete it: discarded, never delivered, no DSN"}


def register(commands: Any) -> None:
    parser = commands.add_parser("queue", help="the delivery queue: list, retry, bounce, "
                                               "delete")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="messages waiting for a retry at the next hop")
    add_filter_options(listing)
    listing.set_defaults(run=guarded(_list))
    for name, what in WHAT.items():
        action = actions.add_parser(name, help=what)
        action.add_argument("message_id", help="the message's id (see `katagate queue list`)")
        action.add_argument("--comment", default="", help="why (kept in the event)")
        add_note_option(action)
        add_projector_options(action)
        action.set_defaults(run=guarded(_act))


def _list(args: argparse.Namespace) -> int:
    document = reader(args).get("/queue/messages", query(args))
    if args.json:
        print_json(document)
        return EXIT_OK
    table(document.get("messages") or [], ROWS,
          {"received_at": when, "next_attempt_at": when, "envelope_from": shown_sender})
    page_footer(document, "messages", "message(s) waiting")
    return EXIT_OK


def _act(args: argparse.Namespace) -> int:
    event = noted(queue_action(args.message_id, args.action, cli_actor(), args.comment,
                               datetime.now(UTC)), checked_note(args.note))
    try:
        row: dict[str, Any] | None = reader(args).get(f"/messages/{args.message_id}")
    except NotFound:
        row = None
    refuse_unless_queued(row, args.message_id)
    record(event)
    print(f"{args.action} of {args.message_id} recorded (event {event.event_id}); `katagate "
          f"messages show {args.message_id}` shows the outcome")
    return EXIT_OK
