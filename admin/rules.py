"""Rules as commands: create, change (order, enable/disable, patterns, the KATA section), delete,
and the rule's KATA protection switch. Pure: the state, the actor, the time and the id come in.
The built-in default rule ('default') takes changes of its KATA section only.

Fields are named as `rules show --json` shows them, the KATA section with a `kata.` prefix:
name, enabled, position, senders, recipients, kata.enabled, kata.action, kata.tag, kata.backup,
kata.on_unavailable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from katagate.admin import values
from katagate.admin.errors import InvalidCommand, NotFound, NothingToChange
from katagate.schemas import (
    DEFAULT_RULE,
    ControlState,
    Rule,
    RuleChanged,
    RuleCreated,
    RuleDeleted,
    RuleKataToggled,
)

RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ACTIONS = ("delete", "reject", "skip")  # "If KATA detected an event": Delete message, Reject, Skip
MAX_POSITION = 2**31 - 2  # the built-in default rule sits after every position
POSITION_STEP = 10  # a new rule goes this far after the last one: room to insert between


def _tag(value: object) -> str | None:
    return None if value is None else values.line("kata.tag", value, 255)


def _on_unavailable(value: object) -> str | None:
    # None (or "global"): the rule follows the global on_unavailable setting.
    if value is None:
        return None
    chosen = values.choice("kata.on_unavailable", value, ("global", "skip", "hold", "tempfail"))
    return None if chosen == "global" else chosen


PARSERS: dict[str, Callable[[object], object]] = {
    "name": lambda v: values.line("name", v, 128),
    "enabled": lambda v: values.switch("enabled", v),
    "position": lambda v: values.integer("position", v, 0, MAX_POSITION),
    "senders": lambda v: values.patterns("senders", v),
    "recipients": lambda v: values.patterns("recipients", v),
    "kata.enabled": lambda v: values.switch("kata.enabled", v),
    "kata.action": lambda v: values.choice("kata.action", v, ACTIONS),
    "kata.tag": _tag,  # None: no subject tag
    "kata.backup": lambda v: values.switch("kata.backup", v),
    "kata.on_unavailable": _on_unavailable,  # None: the global setting
}
RULE_FIELDS: tuple[str, ...] = tuple(PARSERS)


def validate_rule_id(rule_id: str) -> str:
    if not RULE_ID.fullmatch(rule_id):
        raise InvalidCommand(
            "rule_id: must be 1..64 lower-case letters, digits, '-' or '_', starting with a "
            f"letter or digit, got {values.shown(rule_id)}",
            allowed="1..64 of a-z, 0-9, '-' and '_', starting with a letter or digit",
        )
    return rule_id


# The default rule handles mail no rule matches: it matches any sender and recipient, is always
# used and always last, so only its KATA section can change.
DEFAULT_RULE_FIXED = ("it handles mail no rule matches, so it matches any sender and "
                      "recipient, is always enabled and stays last; only its KATA section "
                      "can be changed")


def validate_new_rule_id(rule_id: str) -> str:
    """A rule id a new rule may take: not the built-in default rule's."""
    if rule_id == DEFAULT_RULE.rule_id:
        raise InvalidCommand(
            "rule_id: 'default' is the built-in rule for mail no rule matches and exists "
            "already; change its KATA section with `rules set default` (--kata, --kata-action, "
            "--tag, --backup)")
    return validate_rule_id(rule_id)


def validate_deletable(rule_id: str) -> str:
    if rule_id == DEFAULT_RULE.rule_id:
        raise InvalidCommand(f"rule_id: the default rule cannot be deleted: {DEFAULT_RULE_FIXED}")
    return validate_rule_id(rule_id)


def validate_default_rule_fields(rule_id: str, fields: Mapping[str, object]) -> None:
    """Of the default rule only the KATA section's fields may be named. Needs no state."""
    if rule_id != DEFAULT_RULE.rule_id:
        return
    kata = [name for name in RULE_FIELDS if name.startswith("kata.")]
    for name in fields:
        if not name.startswith("kata."):
            raise InvalidCommand(f"{name}: the default rule's {name} cannot be changed: "
                                 f"{DEFAULT_RULE_FIXED} ({', '.join(kata)})", field=name,
                                 allowed=kata)


def validate_rule_fields(fields: Mapping[str, object]) -> dict[str, object]:
    """The typed value of each named rule field. Needs no state, so a front end can refuse bad
    input before it contacts Kafka."""
    unknown = [name for name in fields if name not in PARSERS]
    if unknown:
        raise InvalidCommand(f"{unknown[0]}: unknown rule field; known fields: "
                             f"{', '.join(RULE_FIELDS)}", field=str(unknown[0]),
                             allowed=list(RULE_FIELDS))
    return {name: PARSERS[name](value) for name, value in fields.items()}


def existing_rule(state: ControlState, rule_id: str) -> Rule:
    """The rule with this id ('default': the built-in one, as configured), or a refusal naming
    the rules there are."""
    validate_rule_id(rule_id)
    if rule_id == DEFAULT_RULE.rule_id:
        return state.default_rule
    rule = state.rules.get(rule_id)
    if rule is None:
        known = ", ".join(sorted(state.rules)) or "none yet"
        raise NotFound(f"rule_id: no rule {rule_id!r} (rules: {known})",
                       allowed=sorted(state.rules))
    return rule


def _position_free(state: ControlState, rule: Rule) -> None:
    # Ties would be broken by id, silently: an administrator moving a rule to a position wants
    # it exactly there, so two rules never share one.
    for other in state.rules.values():
        if other.position == rule.position and other.rule_id != rule.rule_id:
            raise InvalidCommand(
                f"position: {rule.position} is taken by rule {other.rule_id!r}; choose a free "
                "position (rules are matched in ascending position)"
            )


def _build(base: dict[str, Any], typed: Mapping[str, object]) -> Rule:
    kata = dict(base.pop("kata"))
    for name, value in typed.items():
        if name.startswith("kata."):
            kata[name.removeprefix("kata.")] = value
        else:
            base[name] = value
    try:
        return Rule.model_validate({**base, "kata": kata})
    except ValidationError as exc:  # the parsers above should make this unreachable
        first = exc.errors()[0]
        raise InvalidCommand(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


def create_rule(
    state: ControlState, rule_id: str, fields: Mapping[str, object], *, actor: str,
    now: datetime, event_id: UUID,
) -> RuleCreated:
    """A new rule; unnamed fields take the product's defaults (enabled, any sender and recipient,
    KATA protection on, Delete message, tag "[KATA detect]", Backup on), the name defaults to
    the id and the position to after the last rule."""
    producer = values.actor_ref(actor)
    validate_new_rule_id(rule_id)
    typed = validate_rule_fields(fields)
    if rule_id in state.rules:
        raise InvalidCommand(f"rule_id: a rule {rule_id!r} already exists; change it with "
                             "`rules set` or choose another id")
    last = max((r.position for r in state.rules.values()), default=-POSITION_STEP)
    base = Rule(rule_id=rule_id, name=rule_id,
                position=min(last + POSITION_STEP, MAX_POSITION)).model_dump()
    rule = _build(base, typed)
    _position_free(state, rule)
    return RuleCreated(
        event_id=event_id, occurred_at=now, producer=producer, version=state.version + 1,
        actor=actor, rule=rule,
    )


def change_rule(
    state: ControlState, rule_id: str, fields: Mapping[str, object], *, actor: str,
    now: datetime, event_id: UUID,
) -> RuleChanged:
    """Change the named fields of a rule (its order is `position`); the event holds the whole
    rule after the change. A change that changes nothing is refused."""
    producer = values.actor_ref(actor)
    if not fields:
        raise InvalidCommand(f"rule: name at least one field to change ({', '.join(RULE_FIELDS)})",
                             allowed=list(RULE_FIELDS))
    typed = validate_rule_fields(fields)
    validate_default_rule_fields(rule_id, typed)
    rule = existing_rule(state, rule_id)
    new = _build(rule.model_dump(), typed)
    if new == rule:
        raise NothingToChange(f"nothing to change: rule {rule_id!r} already has "
                             f"{', '.join(f'{n} {describe_field(new, n)}' for n in typed)}")
    _position_free(state, new)
    return RuleChanged(
        event_id=event_id, occurred_at=now, producer=producer, version=state.version + 1,
        actor=actor, rule=new,
    )


def delete_rule(
    state: ControlState, rule_id: str, *, actor: str, now: datetime, event_id: UUID
) -> RuleDeleted:
    producer = values.actor_ref(actor)
    validate_deletable(rule_id)
    existing_rule(state, rule_id)
    return RuleDeleted(
        event_id=event_id, occurred_at=now, producer=producer, version=state.version + 1,
        actor=actor, rule_id=rule_id,
    )


def set_rule_kata(
    state: ControlState, rule_id: str, enabled: bool, *, actor: str, now: datetime,
    event_id: UUID,
) -> RuleKataToggled:
    """The rule's KATA protection switch (the rest of its KATA section is kept)."""
    producer = values.actor_ref(actor)
    rule = existing_rule(state, rule_id)
    if rule.kata.enabled == enabled:
        raise NothingToChange(f"kata.enabled: nothing to change, KATA protection of rule "
                             f"{rule_id!r} is already {'on' if enabled else 'off'}")
    return RuleKataToggled(
        event_id=event_id, occurred_at=now, producer=producer, version=state.version + 1,
        actor=actor, rule_id=rule_id, enabled=enabled,
    )


def describe_field(rule: Rule, name: str) -> str:
    """A rule field as messages and the CLI show it."""
    value: object = (getattr(rule.kata, name.removeprefix("kata.")) if name.startswith("kata.")
                     else getattr(rule, name))
    if isinstance(value, bool):
        return "on" if value else "off"
    if name == "kata.tag" and value is None:
        return "(no tag)"
    if name == "kata.on_unavailable" and value is None:
        return "global"
    return repr(value) if isinstance(value, str) else str(value)
