"""`katagate config show [--principal P]`: the Kafka client configuration a stage would use,
katagate's settings merged with the user's properties file, every secret redacted."""

from __future__ import annotations

import argparse
from typing import Any

from katagate.eventlog.clients import shown_config
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.settings import KafkaSettings


def register(commands: Any) -> None:
    parser = commands.add_parser("config", help="show the configuration in force")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the Kafka client configuration (secrets redacted)")
    show.add_argument("--principal", choices=list(PRINCIPALS), default="admin",
                      help="whose credentials (default admin)")
    show.set_defaults(run=_show)


def _show(args: argparse.Namespace) -> int:
    settings = KafkaSettings(principal=args.principal)
    print(f"# principal {args.principal}, topic prefix {settings.topic_prefix}")
    for key, value in sorted(shown_config(settings).items()):
        print(f"{key}={value}")
    return 0
