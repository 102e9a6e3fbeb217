"""`katagate sink run ...`: the demo next-hop MTA (see demo_sink/README.md)."""

from __future__ import annotations

from typing import Any

from katagate.demo_sink.cli import add_options, run


def register(commands: Any) -> None:
    parser = commands.add_parser("sink", help="a demo next-hop MTA that stores what it receives")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    runner = actions.add_parser("run", help="accept mail over SMTP and store it in a folder")
    add_options(runner)
    runner.set_defaults(run=run)
