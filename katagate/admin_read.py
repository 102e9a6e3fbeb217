"""What the commands that read the projector's views share (`katagate messages|backup|queue`):
the projector options, the search filters as options, tables safe for a terminal, and the one
write path of a request event on `katagate.mail`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from katagate.admin.errors import InvalidCommand
from katagate.admin.mail_view import safe_line
from katagate.admin.projector_reader import DEFAULT_TOKEN_FILE, DEFAULT_URL, ProjectorReader
from katagate.admin_write import EXIT_INVALID, EXIT_OK
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import Event

# The filters every listing takes (the projector's names; `from` is a keyword in Python).
FILTERS = (("from", "sender", "envelope sender: an address, *@domain, or <> (null sender)"),
           ("to", "to", "a recipient: an address or *@domain"),
           ("subject", "subject", "words that must all occur in the Subject"),
           ("client", "client", "the SMTP client's IP address"),
           ("since", "since", "received at or after this ISO 8601 instant with a zone"),
           ("until", "until", "received before this ISO 8601 instant with a zone"),
           ("verdict", "verdict", "pending, not_detected, detected, timed_out, skipped, "
                                  "skipped:<reason>"),
           ("action", "action_filter", "delivered, tagged, deleted, rejected"),
           ("status", "status", "pending, delivered, deferred, bounced, discarded, rejected"),
           ("limit", "limit", "rows per page, 1..1000 (50)"),
           ("order", "order", "desc (newest first, the default) or asc"),
           ("cursor", "cursor", "the `next` a previous page printed"))


def add_projector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--projector-url", metavar="URL", help=(
        f"the projector's views (KATAGATE_PROJECTOR_URL; default {DEFAULT_URL})"))
    parser.add_argument("--projector-token-file", metavar="FILE", help=(
        "the file holding the projector's read token (KATAGATE_PROJECTOR_TOKEN_FILE; default "
        f"{DEFAULT_TOKEN_FILE}, made by `katagate up`)"))


def add_filter_options(parser: argparse.ArgumentParser, *extra: tuple[str, str, str]) -> None:
    for name, dest, what in (*FILTERS, *extra):
        parser.add_argument(f"--{name}", dest=dest, metavar="VALUE", help=what)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_projector_options(parser)


def query(args: argparse.Namespace, *extra: tuple[str, str, str]) -> dict[str, str | None]:
    """The projector's query from the options given (the projector validates the values)."""
    return {name: getattr(args, dest) for name, dest, _what in (*FILTERS, *extra)}


def reader(args: argparse.Namespace) -> ProjectorReader:
    return ProjectorReader(args.projector_url, args.projector_token_file)


def refused(args: argparse.Namespace, error: InvalidCommand) -> int:
    print(f"katagate {args.command} {args.action}: {error}", file=sys.stderr)
    return EXIT_INVALID


def guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A refusal (the projector's 400 or 404, a bad value) is exit 2 with its reason."""
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except InvalidCommand as exc:
            return refused(args, exc)
    return wrapped


def cell(value: object, width: int) -> str:
    """One table cell: safe for a terminal, cut to `width`."""
    if value is None:
        text = "-"
    elif isinstance(value, list):
        text = ", ".join(map(str, value[:1])) + (f" (+{len(value) - 1})" if len(value) > 1
                                                  else "")
    else:
        text = str(value)
    text = safe_line(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def when(value: object) -> str:
    """An instant of the projector (`2026-12-03T08:00:00.000000Z`) to the second, in UTC."""
    return str(value)[:19].replace("T", " ") if value else "-"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, int]],
          convert: Mapping[str, Callable[[object], str]] | None = None) -> None:
    """Print `rows` under `columns` (title, key, width); the last column is not padded."""
    convert = convert or {}
    print("  ".join(f"{title:<{width}}" for title, _key, width in columns).rstrip())
    for row in rows:
        cells = []
        for _title, key, width in columns:
            value = convert[key](row.get(key)) if key in convert else row.get(key)
            cells.append(f"{cell(value, width):<{width}}")
        print("  ".join(cells).rstrip())


def page_footer(document: Mapping[str, Any], key: str, noun: str) -> None:
    rows = document.get(key) or []
    more = document.get("next")
    print(f"{len(rows)} {noun}" + (f"; more with --cursor {more}" if more else ""))


def record(event: Event) -> int:
    """Append one request event to `katagate.mail` as the admin principal (one transactional
    id for these requests: a second command at once fences the first, which then fails whole)."""
    settings = KafkaSettings(principal="admin")
    producer = TransactionalProducer(
        settings, PRINCIPALS["admin"].transactional_id(settings.topic_prefix, "admin-requests"))
    try:
        producer.begin()
        producer.produce([Outgoing.event(TopicNames(settings.topic_prefix).mail, event)])
        producer.commit()
    finally:
        producer.close()
    return EXIT_OK
