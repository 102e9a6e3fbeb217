"""`katagate projector run|token|replay`: the live projections over HTTP, the read tokens
their readers send, and the audit replay."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from katagate.eventlog.settings import KafkaSettings
from katagate.log_output import add_options as add_log_options
from katagate.process import settings_or_exit, stop_on_signals


def register(commands: Any) -> None:
    parser = commands.add_parser("projector", help="views rebuilt from the log; the audit replay")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="fold the log live and serve the views over HTTP")
    run.add_argument("--port", type=int, help="HTTP port (default 8080; 0: a free port)")
    run.add_argument("--state-dir", type=Path, help="where the snapshot is kept")
    run.add_argument("--rebuild", action="store_true",
                     help="ignore the snapshot: read every topic from offset 0")
    add_log_options(run)
    run.set_defaults(run=_run)
    _register_tokens(actions)
    add_replay(actions)


def _register_tokens(actions: Any) -> None:
    token = actions.add_parser(
        "token", help="read tokens (Authorization: Bearer) for the views' readers")
    tokens = token.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    create = tokens.add_parser("create", help="create a token and print it (shown only once)")
    create.add_argument("name", help="1..64 letters, digits, '.', '_' or '-'")
    create.add_argument("--out", type=Path, metavar="FILE",
                        help="write the token to FILE (mode 0600) instead of printing it; "
                             "kept when FILE holds a valid token of NAME already")
    _state_dir_option(create)
    create.set_defaults(run=_token_create)
    listing = tokens.add_parser("list", help="the tokens' names")
    _state_dir_option(listing)
    listing.set_defaults(run=_token_list)
    revoke = tokens.add_parser("revoke", help="revoke a token (refused from the next request)")
    revoke.add_argument("name")
    _state_dir_option(revoke)
    revoke.set_defaults(run=_token_revoke)


def _state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path,
                        help="the projector's state folder, where tokens.json is (default "
                             ".katagate/projector; KATAGATE_PROJECTOR_TOKENS_FILE wins)")


def add_replay(actions: Any) -> None:
    """`replay`, under `projector` and, as the auditor looks for it, under `audit`."""
    replay = actions.add_parser("replay", help="rebuild every projection from offset 0")
    bound = replay.add_mutually_exclusive_group()
    bound.add_argument("--until-offset", type=_offset, metavar="N",
                       help="read each partition up to (not including) offset N")
    bound.add_argument("--as-of", type=iso_instant, metavar="ISO-TIME",
                       help="the state as of this instant (records stamped up to it)")
    replay.add_argument("--out", type=Path, metavar="DIR",
                        help="write connection.json, quarantine.json, counters.json, timelines "
                             "and positions.json here (default: print the views)")
    replay.add_argument("--timelines", choices=("jsonl", "csv"), default="jsonl",
                        help="format of the timelines file (default jsonl)")
    replay.set_defaults(run=_replay)


def _offset(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not an offset (an integer >= 0)")
    return int(text)


def iso_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +00:00)")
    return value.astimezone(UTC)


def _settings(args: argparse.Namespace) -> Any:
    """The settings with the command line's overrides; a bad one names itself and its range."""
    from katagate.projector.settings import ProjectorSettings

    overrides: dict[str, Any] = {}
    for name in ("port", "state_dir"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if getattr(args, "rebuild", False):
        overrides["rebuild"] = True
    return settings_or_exit(ProjectorSettings, "projector", **overrides)


def _run(args: argparse.Namespace) -> int:
    from katagate.projector.run import run_projector

    settings = _settings(args)
    stop = stop_on_signals(args)
    run_projector(KafkaSettings(principal="projector"), settings, stop)
    return 0


def _tokens(args: argparse.Namespace) -> Any:
    from katagate.projector.guard import token_file

    return token_file(_settings(args).token_path)


def _token_create(args: argparse.Namespace) -> int:
    from katagate.access.tokens import TokenError

    created = datetime.now(UTC).isoformat()
    try:
        if args.out is not None:
            made = _tokens(args).ensure_in_file(args.name, args.out, created)
            print(f"token {args.name} {'written to' if made else 'kept in'} {args.out}")
            return 0
        token = _tokens(args).create(args.name, created)
    except TokenError as exc:
        print(f"katagate projector token create: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    print(json.dumps([{"name": t.name, "created_at": t.created_at}
                      for t in _tokens(args).records()], indent=2))
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    if not _tokens(args).revoke(args.name):
        print(f"katagate projector token revoke: no token {args.name!r}", file=sys.stderr)
        return 2
    print(f"token {args.name} revoked")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from katagate.projector.replay import print_views, replay, write_outputs

    result = replay(KafkaSettings(principal="projector"), until_offset=args.until_offset,
                    as_of=args.as_of, progress=sys.stderr)
    if args.out is not None:
        for path in write_outputs(result, args.out, args.timelines):
            print(path)
    else:
        print_views(result)
    print(f"replayed {result.records} records in {result.seconds:.2f} s "
          f"({result.rate:,.0f} events/s)", file=sys.stderr)
    return 0
