"""`katagate console run|token|password|user`: the web console and its HTTP API; API tokens for
scripts, passwords and further accounts (an auditor), managed from the machine the console
runs on."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from katagate.log_output import add_options as add_log_options
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
    add_log_options(run)
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
    password.add_argument("--user", help="another account's name (default: the first admin)")
    _state_dir_option(password)
    password.set_defaults(run=_password)
    user = actions.add_parser("user", help="further accounts and their roles")
    users = user.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    add = users.add_parser("add", help="add an account; its password is read from standard "
                                       "input")
    add.add_argument("name", help="1..64 letters, digits, '.', '_' or '-'")
    add.add_argument("--role", choices=("admin", "auditor"), required=True,
                     help="auditor: reads and exports everything, changes nothing")
    _state_dir_option(add)
    add.set_defaults(run=_user_add)
    listed = users.add_parser("list", help="every account's name and role")
    _state_dir_option(listed)
    listed.set_defaults(run=_user_list)
    remove = users.add_parser("remove", help="remove an account; its sessions end")
    remove.add_argument("name")
    _state_dir_option(remove)
    remove.set_defaults(run=_user_remove)


def _state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path,
                        help="the console's state folder (default .katagate/console)")


def _settings(args: argparse.Namespace) -> Any:
    from katagate.console.settings import ConsoleSettings

    overrides: dict[str, Any] = {}
    for name in ("port", "host", "projector_url", "projector_token_file", "state_dir",
                 "tls_cert_file", "tls_key_file"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return settings_or_exit(ConsoleSettings, "console", **overrides)


def _run(args: argparse.Namespace) -> int:
    from katagate.console.run import run_console
    from katagate.eventlog.settings import KafkaSettings

    settings = _settings(args)
    stop = stop_on_signals(args)
    run_console(KafkaSettings(principal="console"), settings, stop)
    return 0


def _store(args: argparse.Namespace) -> Any:
    from katagate.console.accounts import AccountStore

    return AccountStore(_settings(args).state_dir)


def _sessions(args: argparse.Namespace) -> Any:
    from katagate.console.sessions import Sessions
    from katagate.console.state_db import STATE_DB, StateDb

    settings = _settings(args)
    return Sessions(StateDb(settings.state_dir / STATE_DB), settings.session_idle_s,
                    settings.session_max_s)


def _token_create(args: argparse.Namespace) -> int:
    from katagate.access.tokens import TokenError
    from katagate.console.api_tokens import MAX_DAYS, MIN_DAYS

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
    from katagate.console.api_tokens import scope_of

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
    from katagate.console.accounts import ACCOUNT_FILE, AccountError
    from katagate.console.passwords import BadPassword

    store = _store(args)
    if not (store.folder / ACCOUNT_FILE).exists():
        print("katagate console password: no admin account yet: start the console once "
              "(`katagate console run` or `katagate up`)", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\n")
    try:
        account = store.set_password(password, args.user)
    except (BadPassword, AccountError) as exc:
        print(f"katagate console password: {exc}", file=sys.stderr)
        return 2
    ended = _sessions(args).close_all(account.name)
    who = "admin" if args.user is None else f"{account.name}'s"
    print(f"{who} password changed; {ended} session(s) ended")
    return 0


def _user_add(args: argparse.Namespace) -> int:
    from katagate.console.accounts import ACCOUNT_FILE, AccountError
    from katagate.console.passwords import BadPassword

    store = _store(args)
    if not (store.folder / ACCOUNT_FILE).exists():
        print("katagate console user add: no admin account yet: start the console once",
              file=sys.stderr)
        return 2
    try:
        store.add_user(args.name, args.role, sys.stdin.readline().rstrip("\n"))
    except (BadPassword, AccountError) as exc:
        print(f"katagate console user add: {exc}", file=sys.stderr)
        return 2
    print(f"account {args.name} added with the role {args.role}")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    store = _store(args)
    print(json.dumps([{"name": a.name, "role": a.role} for a in store.accounts()], indent=2))
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    if not _store(args).remove_user(args.name):
        print(f"katagate console user remove: no account {args.name!r} (the first admin "
              "stays)", file=sys.stderr)
        return 2
    ended = _sessions(args).close_all(args.name)
    print(f"account {args.name} removed; {ended} session(s) ended")
    return 0
