"""`katagate rules list|show|add|set|delete|kata`: the Rules section and each rule's KATA
protection section. Exit codes: 0 done, 1 Kafka failed, 2 refused (nothing written)."""

from __future__ import annotations

import argparse
from typing import Any

from katagate.admin import values
from katagate.admin.control_reader import read_control
from katagate.admin.errors import InvalidCommand
from katagate.admin.labels import ACTION_LABELS
from katagate.admin.rules import (
    RULE_FIELDS,
    change_rule,
    create_rule,
    delete_rule,
    describe_field,
    existing_rule,
    set_rule_kata,
    validate_default_rule_fields,
    validate_deletable,
    validate_new_rule_id,
    validate_rule_fields,
    validate_rule_id,
)
from katagate.admin_write import (
    add_json_option,
    add_write_options,
    commit,
    print_json,
    refuse,
)
from katagate.eventlog.settings import KafkaSettings
from katagate.schemas import (
    DEFAULT_RULE,
    ControlState,
    Event,
    Rule,
    RuleChanged,
    RuleCreated,
    RuleKataToggled,
)


def register(commands: Any) -> None:
    parser = commands.add_parser("rules", help="mail rules and their KATA protection")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the rules in the order they are matched")
    add_json_option(listing)
    listing.set_defaults(run=_list)
    show = actions.add_parser("show", help="one rule ('default': mail no rule matches)")
    show.add_argument("rule_id")
    add_json_option(show)
    show.set_defaults(run=_show)
    add = actions.add_parser("add", help="create a rule (KATA on, Delete message, "
                                         "tag '[KATA detect]', Backup on unless told)")
    add.add_argument("rule_id", help="1..64 of a-z 0-9 - _")
    _field_options(add)
    add.set_defaults(run=_add)
    change = actions.add_parser("set", help="change a rule: order, enabled, patterns, KATA "
                                            "('default': its KATA section only)")
    change.add_argument("rule_id")
    _field_options(change)
    change.set_defaults(run=_set)
    delete = actions.add_parser("delete", help="delete a rule")
    delete.add_argument("rule_id")
    add_write_options(delete)
    delete.set_defaults(run=_delete)
    kata = actions.add_parser("kata", help="switch a rule's KATA protection on or off")
    kata.add_argument("rule_id")
    kata.add_argument("state", metavar="on|off")
    add_write_options(kata)
    kata.set_defaults(run=_kata)


def _field_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="a display name, 1..128 characters")
    parser.add_argument("--position", metavar="N",
                        help="order: lower positions are matched first (0..2147483646)")
    parser.add_argument("--enabled", metavar="on|off", help="whether the rule is used at all")
    parser.add_argument("--senders", nargs="+", metavar="PATTERN",
                        help="envelope sender patterns, e.g. '*@example.com' ('*': any)")
    parser.add_argument("--recipients", nargs="+", metavar="PATTERN",
                        help="envelope recipient patterns ('*': any)")
    parser.add_argument("--kata", dest="kata_enabled", metavar="on|off",
                        help="KATA protection for this rule")
    parser.add_argument("--kata-action", metavar="delete|reject|skip",
                        help="If KATA detected an event: Delete message, Reject or Skip")
    tag = parser.add_mutually_exclusive_group()
    tag.add_argument("--tag", help="text added at the start of the Subject on a detect")
    tag.add_argument("--no-tag", action="store_true", help="add no text to the Subject")
    parser.add_argument("--backup", metavar="on|off", help="Place copy in Backup")
    parser.add_argument("--on-unavailable", metavar="global|skip|hold|tempfail",
                        help="when KATA cannot answer (not connected, quarantine full): deliver "
                             "unscanned, hold, or 451 at SMTP; 'global': the global setting")
    add_write_options(parser)


def _fields(args: argparse.Namespace) -> dict[str, object]:
    given: dict[str, object] = {
        "name": args.name, "position": args.position, "enabled": args.enabled,
        "senders": args.senders, "recipients": args.recipients,
        "kata.enabled": args.kata_enabled, "kata.action": args.kata_action,
        "kata.tag": args.tag, "kata.backup": args.backup,
        "kata.on_unavailable": args.on_unavailable,
    }
    fields = {name: value for name, value in given.items() if value is not None}
    if args.no_tag:
        fields["kata.tag"] = None
    return fields


def rules_document(state: ControlState) -> dict[str, Any]:
    return {
        "version": state.version,
        "rules": [rule.model_dump(mode="json") for rule in state.ordered_rules()],
        "default_rule": state.default_rule.model_dump(mode="json"),
    }


def _list(args: argparse.Namespace) -> int:
    state = read_control(KafkaSettings(principal="admin"))
    if args.json:
        print_json(rules_document(state))
        return 0
    rows = [("POSITION", "ID", "ENABLED", "KATA", "ACTION", "TAG", "BACKUP", "SENDERS",
             "RECIPIENTS", "NAME")]
    for rule in [*state.ordered_rules(), state.default_rule]:
        builtin = rule.rule_id == DEFAULT_RULE.rule_id
        rows.append((
            "last" if builtin else str(rule.position), rule.rule_id,
            describe_field(rule, "enabled"), describe_field(rule, "kata.enabled"),
            rule.kata.action, rule.kata.tag if rule.kata.tag is not None else "(none)",
            describe_field(rule, "kata.backup"), ",".join(rule.senders),
            ",".join(rule.recipients), rule.name + (" (built in)" if builtin else ""),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"configuration version {state.version}; mail no rule matches uses the last")
    return 0


def _show(args: argparse.Namespace) -> int:
    state = read_control(KafkaSettings(principal="admin"))
    try:
        rule = existing_rule(state, args.rule_id)
    except InvalidCommand as exc:
        return refuse(args, exc)
    if args.json:
        print_json(rule.model_dump(mode="json"))
        return 0
    print(describe_rule(rule))
    return 0


def describe_rule(rule: Rule) -> str:
    rows = [
        (f"Rule {rule.rule_id}", rule.name),
        ("  Enabled", describe_field(rule, "enabled")),
        ("  Position", "after every rule (built in)" if rule.rule_id == DEFAULT_RULE.rule_id
         else str(rule.position)),
        ("  Senders", ", ".join(rule.senders)),
        ("  Recipients", ", ".join(rule.recipients)),
        ("KATA protection", describe_field(rule, "kata.enabled")),
        ("  If KATA detected an event", ACTION_LABELS[rule.kata.action]),
        ("  Add to the subject", "(nothing)" if rule.kata.tag is None else rule.kata.tag),
        ("  Place copy in Backup", describe_field(rule, "kata.backup")),
        ("  If KATA cannot answer", describe_field(rule, "kata.on_unavailable")),
    ]
    return "\n".join(f"{name + ':':30} {value}" for name, value in rows)


def _written(event: Event, before: ControlState, after: ControlState) -> str:
    rule_id = event.rule.rule_id if isinstance(event, RuleCreated | RuleChanged) else str(
        getattr(event, "rule_id", ""))
    what = event.type.removeprefix("rule.")
    if isinstance(event, RuleKataToggled):
        what = f"KATA protection switched {'on' if event.enabled else 'off'}"
    head = (f"rule {rule_id}: {what} by {getattr(event, 'actor', '?')} "
            f"(configuration version {after.version})")
    old, new = _rule_in(before, rule_id), _rule_in(after, rule_id)
    if old is None or new is None:
        return head if new is None else f"{head}\n{describe_rule(new)}"
    changes = [f"  {name}: {describe_field(old, name)} -> {describe_field(new, name)}"
               for name in RULE_FIELDS if describe_field(old, name) != describe_field(new, name)]
    return "\n".join([head + ":", *changes])


def _rule_in(state: ControlState, rule_id: str) -> Rule | None:
    return state.default_rule if rule_id == DEFAULT_RULE.rule_id else state.rules.get(rule_id)


def _checked(args: argparse.Namespace, *, new: bool) -> dict[str, object]:
    """Refuse bad input before contacting Kafka."""
    (validate_new_rule_id if new else validate_rule_id)(args.rule_id)
    fields = _fields(args)
    validate_default_rule_fields(args.rule_id, validate_rule_fields(fields))
    return fields


def _add(args: argparse.Namespace) -> int:
    try:
        fields = _checked(args, new=True)
    except InvalidCommand as exc:
        return refuse(args, exc)
    return commit(args, lambda state, ctx: create_rule(state, args.rule_id, fields, **ctx),
                  _written)


def _set(args: argparse.Namespace) -> int:
    try:
        fields = _checked(args, new=False)
        if not fields:
            raise InvalidCommand(f"rule: name at least one field to change "
                                 f"({', '.join(RULE_FIELDS)})")
    except InvalidCommand as exc:
        return refuse(args, exc)
    return commit(args, lambda state, ctx: change_rule(state, args.rule_id, fields, **ctx),
                  _written)


def _delete(args: argparse.Namespace) -> int:
    try:
        validate_deletable(args.rule_id)
    except InvalidCommand as exc:
        return refuse(args, exc)
    return commit(args, lambda state, ctx: delete_rule(state, args.rule_id, **ctx), _written)


def _kata(args: argparse.Namespace) -> int:
    try:
        validate_rule_id(args.rule_id)
        enabled = values.switch("kata.enabled", args.state)
    except InvalidCommand as exc:
        return refuse(args, exc)
    return commit(args, lambda state, ctx: set_rule_kata(state, args.rule_id, enabled, **ctx),
                  _written)
