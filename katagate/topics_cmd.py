"""`katagate topics create|list`: the topics of docs/ARCHITECTURE.md, created idempotently."""

from __future__ import annotations

import argparse
from typing import Any

from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import ensure_topics, topic_specs


def register(commands: Any) -> None:
    parser = commands.add_parser("topics", help="create or list katagate's topics")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("create", help="create the missing topics (idempotent)").set_defaults(
        run=_create
    )
    actions.add_parser("list", help="list the topics and whether they exist").set_defaults(
        run=_list
    )


def _create(_args: argparse.Namespace) -> int:
    settings = KafkaSettings(principal="admin")
    admin = new_admin(settings)
    created = ensure_topics(admin, settings)
    for spec in topic_specs(settings):
        word = "created" if spec.name in created else "exists"
        print(f"{word:8} {spec.name} ({spec.partitions} partitions)")
    return 0


def _list(_args: argparse.Namespace) -> int:
    settings = KafkaSettings(principal="admin")
    admin = new_admin(settings)
    existing = admin.list_topics(timeout=settings.request_timeout_s).topics
    wrong = 0
    for spec in topic_specs(settings):
        here = spec.name in existing
        have = len(existing[spec.name].partitions) if here else 0
        # A topic with another partition count moves keys to other partitions: not ok.
        word = "ok" if have == spec.partitions else "MISSING" if not here else "PARTITIONS"
        wrong += word != "ok"
        print(f"{word:10} {spec.name:32} {have}/{spec.partitions}  {spec.purpose}")
    return 1 if wrong else 0
