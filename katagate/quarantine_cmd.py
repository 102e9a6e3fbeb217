"""`katagate quarantine release ID`: deliver a quarantined message now (the scan goes on)."""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime
from typing import Any

from admin.central_node import InvalidCommand
from admin.quarantine import forced_release
from eventlog.producer import TransactionalProducer
from eventlog.records import Outgoing
from eventlog.settings import KafkaSettings
from eventlog.topics import TopicNames


def register(commands: Any) -> None:
    parser = commands.add_parser("quarantine", help="act on messages in the KATA quarantine")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    release = actions.add_parser("release", help="deliver a message now; its scan goes on")
    release.add_argument("message_id", help="the id from '250 2.0.0 Ok: queued as ...'")
    release.add_argument("--comment", default="", help="why (kept in the audit log)")
    release.add_argument("--actor", default=getpass.getuser(), help="who releases it")
    release.set_defaults(run=_release)


def _release(args: argparse.Namespace) -> int:
    try:
        event = forced_release(args.message_id, args.actor, args.comment, datetime.now(UTC))
    except InvalidCommand as exc:
        print(f"katagate quarantine release: {exc}")
        return 2
    settings = KafkaSettings()
    producer = TransactionalProducer(settings, f"{settings.topic_prefix}-admin-cli")
    producer.begin()
    producer.produce([Outgoing.event(TopicNames(settings.topic_prefix).mail, event)])
    producer.commit()
    producer.close()
    print(f"release of {args.message_id} recorded")
    return 0
