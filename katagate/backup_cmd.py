"""`katagate backup list|show|download|resend|delete`: the Backup — copies of detected messages
kept before their action — listed and searched, read safely, downloaded as .eml, resent through
the delivery path, deleted. Rows come from the projector (`GET /backup/copies`), a copy's bytes
from `katagate.backup`; resend and delete are request events with the actor."""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from katagate.admin.backup import (
    copy_facts,
    delete_request,
    recipients,
    refuse_unless_held,
    resend_request,
)
from katagate.admin.backup_copy import read_copy
from katagate.admin.errors import InvalidCommand
from katagate.admin.mail_view import safe_line, view
from katagate.admin.quarantine import MESSAGE_ID
from katagate.admin_read import (
    add_filter_options,
    add_projector_options,
    cell,
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
from katagate.eventlog.settings import KafkaSettings
from katagate.messages_cmd import shown_sender
from katagate.schemas import BackupResendRequested

EXTRA = (("detect", "detect", "words in the name of one of the verdict's detects"),
         ("state", "state", "held (still in the Backup) or removed"))
SHOW_LIMIT = 1024 * 1024  # bytes of a copy `show` parses; download gives them all
ROWS = (("stored (UTC)", "stored_at", 19), ("id", "message_id", 26),
        ("from", "envelope_from", 26), ("to", "recipients", 26), ("subject", "subject", 28),
        ("detects", "detects", 20), ("state", "state", 7), ("expires (UTC)", "expires_at", 19))


def register(commands: Any) -> None:
    parser = commands.add_parser("backup", help="the Backup: list, show, download, resend, "
                                                "delete copies of detected messages")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="Backup copies matching every filter, newest "
                                              "first")
    add_filter_options(listing, *EXTRA)
    listing.set_defaults(run=guarded(_list))
    show = actions.add_parser("show", help="a copy's headers and the text of its body, safely")
    _one(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(run=guarded(_show))
    download = actions.add_parser("download", help="a copy as an .eml file (mode 0600)")
    _one(download)
    download.add_argument("--out", metavar="FILE",
                          help="where to write it (default ID.eml here); never overwritten")
    download.set_defaults(run=guarded(_download))
    resend = actions.add_parser("resend", help="send a copy again through the delivery path, "
                                               "marked as released from Backup")
    _one(resend)
    resend.add_argument("--to", nargs="+", metavar="ADDR",
                        help="send to these addresses instead of the original recipients")
    _write_options(resend)
    resend.set_defaults(run=guarded(_resend))
    delete = actions.add_parser("delete", help="remove a copy from the Backup now")
    _one(delete)
    _write_options(delete)
    delete.set_defaults(run=guarded(_delete))


def _one(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("message_id", help="the message's id (see `katagate backup list`)")
    add_projector_options(parser)


def _write_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--comment", default="", help="why (kept in the event)")
    add_note_option(parser)


def _row(args: argparse.Namespace) -> dict[str, Any]:
    if not MESSAGE_ID.fullmatch(args.message_id):
        raise InvalidCommand(f"message_id: expected 8-64 letters and digits (as in 'queued as "
                             f"...'), got {args.message_id!r}")
    return reader(args).get(f"/backup/copies/{args.message_id}")


def _state(row: dict[str, Any]) -> str:
    backup = row.get("backup")
    return str(backup.get("state")) if isinstance(backup, dict) else "-"


def _list(args: argparse.Namespace) -> int:
    document = reader(args).get("/backup/copies", query(args, *EXTRA))
    if args.json:
        print_json(document)
        return EXIT_OK
    rows = [{**row, "state": _state(row),
             "detects": [d.get("name") for d in row.get("detects") or []
                         if isinstance(d, dict)]} for row in document.get("messages") or []]
    table(rows, ROWS, {"stored_at": when, "expires_at": when, "envelope_from": shown_sender})
    page_footer(document, "messages", "cop(y/ies)")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    row = _row(args)
    shown = view(read_copy(KafkaSettings(principal="admin"), row), SHOW_LIMIT)
    if args.json:
        print_json({"copy": row, "view": asdict(shown)})
        return EXIT_OK
    print(f"Backup copy of {row.get('message_id')}: {_state(row)}, stored "
          f"{when(row.get('stored_at'))}, expires {when(row.get('expires_at'))}, "
          f"{row.get('size')} bytes")
    print()
    for name, value in shown.headers:
        print(f"{name}: {value}")
    print()
    print(shown.text)
    for attachment in shown.attachments:
        print(f"[attachment: {cell(attachment.filename or '(no name)', 100)}, "
              f"{attachment.content_type}, {attachment.size} bytes]")
    if shown.truncated:
        print(f"[shortened: the view reads the first {SHOW_LIMIT} bytes and at most 1000 parts;"
              " `katagate backup download` gives the whole message]")
    return EXIT_OK


def _download(args: argparse.Namespace) -> int:
    out = Path(args.out or f"{args.message_id}.eml")
    if out.exists() or out.is_symlink():
        raise InvalidCommand(f"out: {out} exists; katagate never overwrites a file: name "
                             "another with --out", field="out")
    row = _row(args)
    data = read_copy(KafkaSettings(principal="admin"), row)
    if hashlib.sha256(data).hexdigest() != copy_facts(row).sha256:  # RawReader checked; again
        raise InvalidCommand(f"message_id: the copy of {args.message_id} does not match its "
                             "sha256")
    try:  # O_EXCL: a file made meanwhile is not overwritten either; 0600, it is mail content
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise InvalidCommand(f"out: {out} exists; katagate never overwrites a file",
                             field="out") from None
    except OSError as exc:  # no such folder, not allowed there, a symbolic link
        raise InvalidCommand(f"out: {out} cannot be made: {exc.strerror}", field="out") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    print(f"{out}: {len(data)} bytes, sha256 {copy_facts(row).sha256}")
    return EXIT_OK


def _resend(args: argparse.Namespace) -> int:
    actor, note = cli_actor(), checked_note(args.note)
    if args.to is not None:
        recipients(args.to)  # refused before asking anyone
    row = _row(args)
    event = noted(resend_request(row, actor, args.comment, args.to, datetime.now(UTC)), note)
    record(event)
    print(resend_recorded(event))
    return EXIT_OK


def resend_recorded(event: BackupResendRequested) -> str:
    """What `resend` says it wrote. The original recipients are mail data (an envelope may
    hold C1 controls or bidi overrides): made safe for the terminal like every table cell."""
    return (f"resend of {event.message_id} to {safe_line(', '.join(event.recipients))} "
            f"recorded (event {event.event_id}); `katagate messages show {event.message_id}` "
            "shows the outcome")


def _delete(args: argparse.Namespace) -> int:
    actor, note = cli_actor(), checked_note(args.note)
    event = noted(delete_request(args.message_id, actor, args.comment, datetime.now(UTC)), note)
    refuse_unless_held(_row(args))
    record(event)
    print(f"deletion of the Backup copy of {args.message_id} recorded (event {event.event_id})")
    return EXIT_OK
