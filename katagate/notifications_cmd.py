"""`katagate notifications show|set`: who is told of what (detects, late detects, Skipped
messages, quarantine usage, a lost connection), how often, and in which words. Exit codes: 0
done, 1 Kafka failed, 2 refused (nothing written)."""

from __future__ import annotations

import argparse
from typing import Any

from katagate.admin.control_reader import read_control
from katagate.admin.errors import InvalidCommand
from katagate.admin.notifications import (
    PARSERS,
    TEMPLATE_NAMES,
    change_notifications,
    describe,
    validate,
)
from katagate.admin_write import (
    add_json_option,
    add_write_options,
    commit,
    named_changes,
    print_json,
    refuse,
)
from katagate.eventlog.settings import KafkaSettings
from katagate.schemas import ControlState, Event, NotificationSettings

OPTIONS: dict[str, tuple[str, str, str]] = {
    "admin_addresses": ("--admins", "ADDRESSES",
                        "administrator addresses, comma separated (up to 20; none: nobody)"),
    "notify_detect": ("--detect", "on|off", "tell the administrators of each detect"),
    "notify_late_detect": ("--late-detect", "on|off",
                           "tell them of a detect after the message was sent on"),
    "notify_skipped": ("--skipped", "on|off", "tell them of a message delivered unscanned "
                       "because the quarantine was full or KATA did not answer"),
    "notify_quarantine_usage": ("--quarantine-usage", "on|off",
                                "tell them when the quarantine is over 90 %% of a limit"),
    "notify_connection_lost": ("--connection-lost", "on|off",
                               "tell them when the Central Node connection leaves Connected"),
    "notify_recipients_deleted": ("--recipients-deleted", "on|off",
                                  "tell recipients a message to them was deleted (default off)"),
    "notify_recipients_late_detect": ("--recipients-late-detect", "on|off",
                                      "tell recipients of a late detect in mail they received "
                                      "(default off)"),
    "digest_interval_s": ("--digest-interval", "SECONDS",
                          "send held-back notices together this often, 60..86400 s "
                          "(default 900)"),
    "rate_limit_per_hour": ("--rate-limit", "N", "single notices per hour, 0..1000 (default "
                            "20); the rest go into the digest"),
}
LABELS = {
    "admin_addresses": "Administrator addresses",
    "notify_detect": "Notify of detects",
    "notify_late_detect": "Notify of late detects",
    "notify_skipped": "Notify of Skipped (full or unreachable)",
    "notify_quarantine_usage": "Notify of quarantine usage over 90 %",
    "notify_connection_lost": "Notify of a lost connection",
    "notify_recipients_deleted": "Tell recipients of deleted mail",
    "notify_recipients_late_detect": "Tell recipients of late detects",
    "digest_interval_s": "Digest interval",
    "rate_limit_per_hour": "Single notices per hour",
}


def register(commands: Any) -> None:
    parser = commands.add_parser("notifications", help="who is told of scan events, and how")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the notification settings in force")
    show.add_argument("--templates", action="store_true", help="show the templates too")
    add_json_option(show)
    show.set_defaults(run=_show)
    change = actions.add_parser(
        "set", help="change notification settings",
        description="Change notification settings; what is not named stays as it is. "
                    "Templates: template.<kind>.subject=TEXT, template.<kind>.body=TEXT "
                    "(or =default).")
    for name, (flag, metavar, text) in OPTIONS.items():
        change.add_argument(flag, dest=name, metavar=metavar, help=text)
    change.add_argument("assignments", nargs="*", metavar="NAME=VALUE",
                        help=f"a setting by its name: {', '.join(PARSERS)}, "
                             "template.<kind>.subject|body")
    add_write_options(change)
    change.set_defaults(run=_set)


def notifications_document(state: ControlState) -> dict[str, Any]:
    settings = state.notifications
    return {"version": state.version, "settings": settings.model_dump(mode="json"),
            "templates_in_force": {name: getattr(settings.template(kind), part)
                                   for name, kind, part in _templates()}}


def _templates() -> list[tuple[str, Any, str]]:
    return [(name, name.split(".")[1], name.split(".")[2]) for name in TEMPLATE_NAMES]


def _show(args: argparse.Namespace) -> int:
    state = read_control(KafkaSettings(principal="admin"))
    if args.json:
        print_json(notifications_document(state))
        return 0
    for name, label in LABELS.items():
        print(f"{label + ':':44} {describe(name, state.notifications)}")
    if args.templates:
        for name in TEMPLATE_NAMES:
            print(f"{name + ':':44} {describe(name, state.notifications)}")
    print(f"{'Configuration version:':44} {state.version}")
    return 0


def _changes(args: argparse.Namespace) -> dict[str, object]:
    return named_changes(args, OPTIONS, "rate_limit_per_hour=20",
                         lambda v: v.replace("\\n", "\n"))  # a body's line breaks, typed as \n


def _changed(event: Event, before: ControlState, after: ControlState) -> str:
    lines = [f"Notification settings changed by {getattr(event, 'actor', '?')} "
             f"(configuration version {after.version}):"]
    for name in (*NotificationSettings.model_fields, *TEMPLATE_NAMES):
        if name == "templates":
            continue
        old, new = describe(name, before.notifications), describe(name, after.notifications)
        if old != new:
            lines.append(f"  {LABELS.get(name, name)}: {old} -> {new}")
    return "\n".join(lines)


def _set(args: argparse.Namespace) -> int:
    try:
        changes = _changes(args)
        validate(changes)  # bad values are refused before Kafka is contacted
    except InvalidCommand as exc:
        return refuse(args, exc)
    return commit(args, lambda state, ctx: change_notifications(state, changes, **ctx),
                  _changed)
