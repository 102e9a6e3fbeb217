"""The configuration in force, folded from control events: KATA settings, the global toggle,
the rules in order, and the Central Node connection state.

Pure and shared: ingest matches rules with it, the decider admits and acts with it. It lives
beside the events because it is nothing but their meaning.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace

from katagate.schemas.control import (
    ConnectionState,
    ConnectionStateChanged,
    KataProtectionToggled,
    KataSettings,
    KataSettingsChanged,
    KataSettingsReset,
    OnUnavailable,
    Rule,
    RuleChanged,
    RuleCreated,
    RuleDeleted,
    RuleKata,
    RuleKataToggled,
)
from katagate.schemas.envelope import Event
from katagate.schemas.notifications import NotificationSettings, NotificationSettingsChanged

# Mail no rule matches is handled by this rule, with the product's defaults for a rule's KATA
# section (protection on, Delete message, tag "[KATA detect]", Backup on). Only its KATA section
# can be changed (`rule.changed` / `rule.kata_toggled` with rule_id "default"); the rest is fixed:
# any sender and recipient, enabled, last.
DEFAULT_RULE = Rule(rule_id="default", name="Default rule", position=2**31 - 1)


def _default_rule_with(kata: RuleKata) -> Rule:
    # Only the KATA section is taken from an event: a hand-written one cannot move, narrow or
    # disable the rule that catches all remaining mail.
    return DEFAULT_RULE.model_copy(update={"kata": kata})


@dataclass(frozen=True)
class ControlState:
    settings: KataSettings = field(default_factory=KataSettings)
    protection_enabled: bool = False
    rules: dict[str, Rule] = field(default_factory=dict)
    connection: ConnectionState = "not_configured"
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    default_rule: Rule = DEFAULT_RULE  # its KATA section as the administrator set it
    # The highest configuration version seen; recorded with each message it applied to.
    version: int = 0

    def ordered_rules(self) -> list[Rule]:
        return sorted(self.rules.values(), key=lambda r: (r.position, r.rule_id))

    def rule(self, rule_id: str | None) -> Rule:
        if rule_id is None or rule_id == DEFAULT_RULE.rule_id:
            return self.default_rule
        return self.rules.get(rule_id, self.default_rule)


def evolve(state: ControlState, event: Event) -> ControlState:
    version = max(state.version, getattr(event, "version", 0))
    match event:
        case KataSettingsChanged() | KataSettingsReset():
            return replace(state, settings=event.settings, version=version)
        case KataProtectionToggled():
            return replace(state, protection_enabled=event.enabled, version=version)
        case RuleChanged() if event.rule.rule_id == DEFAULT_RULE.rule_id:
            return replace(state, default_rule=_default_rule_with(event.rule.kata),
                           version=version)
        case RuleCreated() | RuleDeleted() if _names_default(event):
            return state  # the default rule is built in: admin refuses both, the fold too
        case RuleKataToggled() if event.rule_id == DEFAULT_RULE.rule_id:
            kata = state.default_rule.kata.model_copy(update={"enabled": event.enabled})
            return replace(state, default_rule=_default_rule_with(kata), version=version)
        case RuleCreated() | RuleChanged():
            return replace(state, rules={**state.rules, event.rule.rule_id: event.rule},
                           version=version)
        case RuleDeleted():
            rules = {k: v for k, v in state.rules.items() if k != event.rule_id}
            return replace(state, rules=rules, version=version)
        case RuleKataToggled() if event.rule_id in state.rules:
            rule = state.rules[event.rule_id]
            changed = rule.model_copy(update={"kata": rule.kata.model_copy(
                update={"enabled": event.enabled})})
            return replace(state, rules={**state.rules, event.rule_id: changed}, version=version)
        case NotificationSettingsChanged():
            return replace(state, notifications=event.settings, version=version)
        case ConnectionStateChanged():
            return replace(state, connection=event.state)
    return replace(state, version=version) if version != state.version else state


def _names_default(event: RuleCreated | RuleDeleted) -> bool:
    rule_id = event.rule.rule_id if isinstance(event, RuleCreated) else event.rule_id
    return rule_id == DEFAULT_RULE.rule_id


def _matches(address: str, patterns: list[str]) -> bool:
    folded = address.casefold()
    return any(fnmatch.fnmatchcase(folded, p.casefold()) for p in patterns)


def match_rule(state: ControlState, sender: str, recipients: list[str]) -> Rule:
    """The first enabled rule (by position) whose sender patterns match the envelope sender and
    whose recipient patterns match at least one envelope recipient; else the default rule.

    Matching uses envelope addresses only, never header display parsing (CVE-2023-27043).
    """
    for rule in state.ordered_rules():
        if not rule.enabled:
            continue
        if _matches(sender, rule.senders) and any(_matches(r, rule.recipients)
                                                   for r in recipients):
            return rule
    return state.default_rule


def on_unavailable_of(state: ControlState, rule: Rule) -> OnUnavailable:
    """What to do with a message of `rule` that KATA cannot scan now: the rule's own choice,
    else the global setting."""
    return rule.kata.on_unavailable or state.settings.on_unavailable
