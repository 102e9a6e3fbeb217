"""`katagate schemas write|check`: the committed JSON Schemas of every event."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from katagate.schemas import jsonschema

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "schemas" / "json"


def register(commands: Any) -> None:
    parser = commands.add_parser("schemas", help="generate or check the events' JSON Schemas")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    write = actions.add_parser("write", help="regenerate the JSON Schema files")
    write.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    write.set_defaults(run=_write)
    check = actions.add_parser("check", help="fail if the committed files are stale")
    check.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    check.set_defaults(run=_check)


def _write(args: argparse.Namespace) -> int:
    jsonschema.write(args.dir)
    print(f"wrote the JSON Schemas into {args.dir}")
    return 0


def _check(args: argparse.Namespace) -> int:
    stale = jsonschema.check(args.dir)
    for name in stale:
        print(f"stale: {name}")
    return 1 if stale else 0
