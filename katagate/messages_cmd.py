"""`katagate messages search|show`: message tracking — find any message by sender,
recipient, subject, client, time, verdict, action or delivery state, and read its timeline.
Through the projector's views (`GET /search/messages`, `GET /messages/{id}`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from katagate.admin.errors import InvalidCommand
from katagate.admin.quarantine import MESSAGE_ID
from katagate.admin_read import (
    add_filter_options,
    add_projector_options,
    cell,
    guarded,
    page_footer,
    query,
    reader,
    table,
    when,
)
from katagate.admin_write import EXIT_OK, print_json

ROWS = (("time (UTC)", "received_at", 19), ("id", "message_id", 26),
        ("from", "envelope_from", 28), ("to", "recipients", 28), ("subject", "subject", 30),
        ("verdict", "verdict", 12), ("action", "action", 9), ("status", "status", 9))


def register(commands: Any) -> None:
    parser = commands.add_parser("messages", help="message tracking: search, a timeline")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    search = actions.add_parser("search", help="messages matching every filter given, "
                                               "newest first")
    add_filter_options(search)
    search.set_defaults(run=guarded(_search))
    show = actions.add_parser("show", help="a message's timeline: every event and its time")
    show.add_argument("message_id", help="the id from '250 2.0.0 Ok: queued as ...'")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    add_projector_options(show)
    show.set_defaults(run=guarded(_show))


def shown_sender(value: object) -> str:
    return "<>" if value == "" else str(value) if value is not None else "-"


def _search(args: argparse.Namespace) -> int:
    document = reader(args).get("/search/messages", query(args))
    if args.json:
        print_json(document)
        return EXIT_OK
    table(document.get("messages") or [], ROWS,
          {"received_at": when, "envelope_from": shown_sender})
    page_footer(document, "messages", "message(s)")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    if not MESSAGE_ID.fullmatch(args.message_id):
        raise InvalidCommand(f"message_id: expected 8-64 letters and digits (as in 'queued as "
                             f"...'), got {args.message_id!r}")
    document = reader(args).get(f"/messages/{args.message_id}")
    if args.json:
        print_json(document)
        return EXIT_OK
    summary = {k: v for k, v in document.items() if k != "events"}
    for key in ("message_id", "received_at", "envelope_from", "recipients", "subject",
                "client_ip", "size", "rule_id", "verdict", "detects", "action", "status",
                "last_reply", "next_attempt_at", "backup", "first_at", "quarantine",
                "decision", "outcome"):
        if key in summary:
            value = summary[key]
            if key == "envelope_from":
                value = shown_sender(value)
            elif isinstance(value, dict | list) and key != "recipients":
                value = json.dumps(value, sort_keys=True)
            print(f"{key + ':':<17}{cell(value, 200) if key != 'recipients' else _all(value)}")
    print()
    for event in document.get("events") or []:
        fields = json.dumps(event.get("fields") or {}, sort_keys=True, ensure_ascii=False)
        print(f"{when(event.get('occurred_at'))}  {cell(event.get('type'), 26):<26}  "
              f"{cell(event.get('producer'), 24):<24}  {cell(fields, 160)}")
    return EXIT_OK


def _all(recipients: object) -> str:
    if not isinstance(recipients, list):
        return cell(recipients, 200)
    return cell(", ".join(map(str, recipients)), 400)
