"""`katagate acls show | apply [--dry-run]`: each principal's grants, derived from the stages'
own definitions (eventlog/principals.py), and made exactly true on the cluster."""

from __future__ import annotations

import argparse
from typing import Any

from katagate.eventlog.acls import apply, plan
from katagate.eventlog.clients import new_admin
from katagate.eventlog.principals import PRINCIPALS, grants
from katagate.eventlog.settings import KafkaSettings


def register(commands: Any) -> None:
    parser = commands.add_parser("acls", help="the Kafka ACLs of katagate's principals")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("show", help="print every principal's grants").set_defaults(run=_show)
    applying = actions.add_parser(
        "apply", help="grant what each principal needs and remove what it does not (as admin)")
    applying.add_argument("--dry-run", action="store_true",
                          help="print the changes without making them")
    applying.set_defaults(run=_apply)


def _show(_args: argparse.Namespace) -> int:
    prefix = KafkaSettings().topic_prefix
    for name, who in PRINCIPALS.items():
        print(f"# {name}: {who.why}")
        for grant in grants(prefix):
            if grant.principal == name:
                print(grant.line())
    print("# admin is also a super user of katagate's own secure broker (it applies these)")
    return 0


def _apply(args: argparse.Namespace) -> int:
    settings = KafkaSettings(principal="admin")
    admin = new_admin(settings)
    change, foreign = plan(admin, settings.topic_prefix, settings.request_timeout_s)
    for binding in foreign:
        print(f"left alone (not katagate's kind of grant): {binding}")
    for grant in change.create:
        print(f"{'would grant ' if args.dry_run else 'granted    '} {grant.line()}")
    for grant in change.delete:
        print(f"{'would remove' if args.dry_run else 'removed    '} {grant.line()}")
    if not args.dry_run:
        apply(admin, change, settings.request_timeout_s, settings.topic_prefix)
    print(f"{len(change.create)} to grant, {len(change.delete)} to remove, {change.kept} in "
          f"force already{' (dry run: nothing changed)' if args.dry_run else ''}")
    return 0
