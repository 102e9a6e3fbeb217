"""`katagate console run|token|password`: the web console and its HTTP API; API tokens for
scripts and the admin password, managed from the machine the console runs on."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from katagate.process import settings_or_exit, stop_on_signals


def register(commands: Any) -> None:
    parser = commands.add_parser("console", help="the web console and its HTTP API")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="serve the web console and the API")
    run.add_argument("--port", type=int, help="HTTP port (default 8081; 0: a free port)")
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--projector-url", help="the projector's HTTP API "
                                             "(default http://127.0.0.1:8080)")
    run.add_argument("--projector-token-file", type=Path,
                     help="a file (mode 0600) holding the projector read token to send")
    run.add_argument("--tls-cert-file", type=Path,
                     help="serve HTTPS with this PEM certificate (chain); with --tls-key-file")
    run.add_argument("--tls-key-file", type=Path, help="the certificate's PEM private key")
    _state_dir_option(run)
    run.set_defaults(run=_run)
    token = actions.add_parser("token", help="API tokens (Authorization: Bearer) for scripts")
    tokens = token.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    create = tokens.add_parser("create", help="create a token and print it (shown only once)")
    create.add_argument("name", help="1..64 letters, digits, '.', '_' or '-'")
    create.add_argument("--scope", choices=("read", "admin"), default="read",
                        help="read: GET only (default); admin: every change")
    create.add_argument("--expires", type=int, default=90, metavar="DAYS",
                        help="days until the token stops working, 1..3650 (default 90)")
    _state_dir_option(create)
    create.set_defaults(run=_token_create)
    listing = tokens.add_parser("list", help="the tokens' names")
    _state_dir_option(listing)
    listing.set_defaults(run=_token_list)
    revoke = tokens.add_parser("revoke", help="revoke a token")
    revoke.add_argument("name")
    _state_dir_option(revoke)
    revoke.set_defaults(run=_token_revoke)
    password = actions.add_parser(
        "password", help="set the admin password (read from standard input); every session "
                         "of the account ends at once")
    _state_dir_option(password)
    password.set_defaults(run=_password)


def _state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path,
                        help="the console's state folder (default .katagate/console)")


def _settings(args: argparse.Namespace) -> Any:
    from console.settings import ConsoleSettings

    overrides: dict[str, Any] = {}
    for name in ("port", "host", "projector_url", "projector_token_file", "state_dir",
                 "tls_cert_file", "tls_key_file"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return settings_or_exit(ConsoleSettings, "console", **overrides)


def _run(args: argparse.Namespace) -> int:
    from console.run import run_console
    from eventlog.settings import KafkaSettings

    settings = _settings(args)
    stop = stop_on_signals()
    run_console(KafkaSettings(principal="console"), settings, stop)
    return 0


def _store(args: argparse.Namespace) -> Any:
    from console.accounts import AccountStore

    return AccountStore(_settings(args).state_dir)


def _sessions(args: argparse.Namespace) -> Any:
    from console.sessions import SESSIONS_FILE, Sessions

    settings = _settings(args)
    return Sessions(settings.state_dir / SESSIONS_FILE, settings.session_idle_s,
                    settings.session_max_s)


def _token_create(args: argparse.Namespace) -> int:
    from access.tokens import TokenError
    from console.api_tokens import MAX_DAYS, MIN_DAYS

    if not MIN_DAYS <= args.expires <= MAX_DAYS:
        print(f"katagate console token create: --expires: must be {MIN_DAYS}..{MAX_DAYS} days, "
              f"got {args.expires}", file=sys.stderr)
        return 2
    store = _store(args)
    store.migrate_tokens()
    try:
        token = store.create_token(args.name, datetime.now(UTC), args.scope, args.expires)
    except TokenError as exc:
        print(f"katagate console token create: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from console.api_tokens import scope_of

    store = _store(args)
    store.migrate_tokens()
    print(json.dumps([{"name": t.name, "created_at": t.created_at, "scope": scope_of(t),
                       "expires_at": t.expires_at} for t in store.tokens()], indent=2))
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    if not _store(args).revoke_token(args.name):
        print(f"katagate console token revoke: no token {args.name!r}", file=sys.stderr)
        return 2
    print(f"token {args.name} revoked")
    return 0


def _password(args: argparse.Namespace) -> int:
    from console.accounts import ACCOUNT_FILE
    from console.passwords import BadPassword

    store = _store(args)
    if not (store.folder / ACCOUNT_FILE).exists():
        print("katagate console password: no admin account yet: start the console once "
              "(`katagate console run` or `katagate up`)", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\n")
    try:
        store.set_password(password)
    except BadPassword as exc:
        print(f"katagate console password: {exc}", file=sys.stderr)
        return 2
    ended = _sessions(args).close_all(store.admin().name)
    print(f"admin password changed; {ended} session(s) ended")
    return 0
