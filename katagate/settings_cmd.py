"""`katagate settings show|set|defaults`: the KATA Protection window (fields, Apply, and the
"Set default values" link). Exit codes: 0 done, 1 Kafka failed, 2 refused (nothing written)."""

from __future__ import annotations

import argparse
from typing import Any

from katagate.admin.control_reader import read_control
from katagate.admin.errors import InvalidCommand
from katagate.admin.settings import (
    SETTING_NAMES,
    change_settings,
    describe,
    reset_settings,
    validate_settings,
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
from katagate.schemas import ControlState, Event, KataSettings, KataSettingsReset

# Option → setting, as the product's window names them.
OPTIONS: dict[str, tuple[str, str, str]] = {
    "central_node_address": ("--central-node-address", "IPV4", "KATA Central Node IPv4-address"),
    "central_node_port": ("--port", "PORT", "KATA Central Node port, 1..65535 (default 443)"),
    "response_timeout_s": ("--response-timeout", "SECONDS",
                           "KATA response timeout, 60..86400 s (default 600)"),
    "quarantine_max_size_mb": ("--quarantine-max-size-mb", "MB",
                               "KATA Quarantine maximum size, at least 1 MB (default 1024)"),
    "quarantine_max_messages": ("--quarantine-max-messages", "N",
                                "Maximum number of messages in KATA Quarantine, "
                                "1..4294967296 (default 5000)"),
    "ndr_enabled": ("--ndr", "on|off", "NDR for messages rejected after the SMTP session"),
    "poll_interval_s": ("--poll-interval", "SECONDS",
                        "how often to poll the Central Node, 1..3600 s (default 60)"),
    "backup_max_age_days": ("--backup-max-age-days", "DAYS",
                            "keep a Backup copy this long, 1..3650 days (default 30)"),
    "backup_max_bytes": ("--backup-max-bytes", "BYTES",
                         "Backup maximum size, at least 1048576 bytes (default 10 GiB); "
                         "the oldest copies go first"),
    "on_unavailable": ("--on-unavailable", "skip|hold|tempfail",
                       "mail KATA cannot scan now: deliver unscanned (skip, default), hold it "
                       "until KATA answers or the timeout, or answer 451 at SMTP (tempfail)"),
    "hold_outcome": ("--hold-outcome", "skip|reject",
                     "held mail whose response timeout ended: deliver (skip) or reject"),
    "verdict_header_name": ("--verdict-header", "NAME|off",
                            "add this header with the verdict to delivered mail (default off)"),
    "verdict_header_format": ("--verdict-header-format", "FORMAT",
                              "its value; placeholders {verdict} {scanned_at} {scan_id} "
                              "{detects} {message_id}"),
    "verdict_cache_ttl_s": ("--verdict-cache-ttl", "SECONDS",
                            "reuse a verdict for identical content this long, 0..604800 s "
                            "(default 3600; 0: off)"),
}
LABELS = {
    "central_node_address": "KATA Central Node IPv4-address",
    "central_node_port": "KATA Central Node port",
    "response_timeout_s": "KATA response timeout",
    "quarantine_max_bytes": "KATA Quarantine maximum size",
    "quarantine_max_messages": "Maximum number of messages in KATA Quarantine",
    "ndr_enabled": "NDR for messages rejected after the session",
    "poll_interval_s": "Central Node poll interval",
    "backup_max_age_days": "Backup storage period",
    "backup_max_bytes": "Backup maximum size",
    "on_unavailable": "When KATA cannot scan",
    "hold_outcome": "Held mail after the response timeout",
    "verdict_header_name": "Verdict header",
    "verdict_header_format": "Verdict header format",
    "verdict_cache_ttl_s": "Verdict cache time-to-live",
}


def register(commands: Any) -> None:
    parser = commands.add_parser("settings", help="the KATA Protection settings")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the settings in force")
    add_json_option(show)
    show.set_defaults(run=_show)
    change = actions.add_parser(
        "set", help="change settings (Apply)",
        description="Change KATA Protection settings; what is not named stays as it is.")
    for name, (flag, metavar, text) in OPTIONS.items():
        change.add_argument(flag, dest=name, metavar=metavar, help=text)
    change.add_argument("assignments", nargs="*", metavar="NAME=VALUE",
                        help=f"a setting by its name in `show --json`: {', '.join(SETTING_NAMES)}")
    add_write_options(change)
    change.set_defaults(run=_set)
    defaults = actions.add_parser(
        "defaults", help="Set default values: port 443, timeout 600 s, 1024 MB, 5000 messages")
    add_write_options(defaults)
    defaults.set_defaults(run=_defaults)


def settings_document(state: ControlState) -> dict[str, Any]:
    return {
        "version": state.version,
        "kata_protection": state.protection_enabled,
        "settings": state.settings.model_dump(mode="json"),
    }


def _show(args: argparse.Namespace) -> int:
    state = read_control(KafkaSettings(principal="admin"))
    if args.json:
        print_json(settings_document(state))
        return 0
    print(f"{'KATA protection:':48} {'on' if state.protection_enabled else 'off'}")
    for name, label in LABELS.items():
        print(f"{label + ':':48} {describe(name, state.settings)}")
    print(f"{'Configuration version:':48} {state.version}")
    return 0


def _changes(args: argparse.Namespace) -> dict[str, object]:
    return named_changes(args, OPTIONS, "central_node_port=443")


def _changed(event: Event, before: ControlState, after: ControlState) -> str:
    what = "set to default values" if isinstance(event, KataSettingsReset) else "changed"
    lines = [f"KATA settings {what} by {getattr(event, 'actor', '?')} "
             f"(configuration version {after.version}):"]
    for name in KataSettings.model_fields:
        old, new = describe(name, before.settings), describe(name, after.settings)
        if old != new:
            lines.append(f"  {LABELS[name]}: {old} -> {new}")
    return "\n".join(lines)


def _set(args: argparse.Namespace) -> int:
    try:
        changes = _changes(args)
        validate_settings(changes)  # bad values are refused before Kafka is contacted
    except InvalidCommand as exc:
        return refuse(args, exc)
    return commit(args, lambda state, ctx: change_settings(state, changes, **ctx), _changed)


def _defaults(args: argparse.Namespace) -> int:
    return commit(args, lambda state, ctx: reset_settings(state, **ctx), _changed)
