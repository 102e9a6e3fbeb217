"""The configuration in force, folded from control events; rule matching on envelope addresses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from katagate.schemas import (
    DEFAULT_RULE,
    ControlState,
    KataProtectionToggled,
    ProducerRef,
    Rule,
    RuleCreated,
    RuleDeleted,
    RuleKataToggled,
    evolve_control,
    match_rule,
)

NOW = datetime(2026, 11, 29, tzinfo=UTC)
REF = ProducerRef(stage="admin", instance="a")


def created(rule: Rule, version: int) -> RuleCreated:
    return RuleCreated(event_id=uuid.uuid4(), occurred_at=NOW, producer=REF, version=version,
                       actor="admin", rule=rule)


def fold(*events) -> ControlState:
    state = ControlState()
    for event in events:
        state = evolve_control(state, event)
    return state


FINANCE = Rule(rule_id="finance", name="Finance", position=1, recipients=["*@finance.example"])
EXEC = Rule(rule_id="exec", name="Executives", position=0, senders=["*@partner.example"],
            recipients=["ceo@*"])


def test_the_first_matching_rule_by_position_wins():
    state = fold(created(FINANCE, 1), created(EXEC, 2))
    assert match_rule(state, "x@partner.example", ["ceo@finance.example"]).rule_id == "exec"
    assert match_rule(state, "x@other.example", ["ceo@finance.example"]).rule_id == "finance"
    assert match_rule(state, "x@other.example", ["bob@sales.example"]) == DEFAULT_RULE


def test_matching_is_case_insensitive_and_one_recipient_suffices():
    state = fold(created(FINANCE, 1))
    assert match_rule(state, "", ["a@x.example", "Bob@FINANCE.example"]).rule_id == "finance"


def test_a_disabled_or_deleted_rule_does_not_match():
    disabled = FINANCE.model_copy(update={"enabled": False})
    assert match_rule(fold(created(disabled, 1)), "a@b", ["x@finance.example"]) == DEFAULT_RULE
    deleted = RuleDeleted(event_id=uuid.uuid4(), occurred_at=NOW, producer=REF, version=2,
                          actor="admin", rule_id="finance")
    assert fold(created(FINANCE, 1), deleted).rules == {}


def test_toggles_and_versions_fold():
    toggle = KataProtectionToggled(event_id=uuid.uuid4(), occurred_at=NOW, producer=REF,
                                   version=3, actor="admin", enabled=True)
    off = RuleKataToggled(event_id=uuid.uuid4(), occurred_at=NOW, producer=REF, version=4,
                          actor="admin", rule_id="finance", enabled=False)
    state = fold(created(FINANCE, 1), toggle, off)
    assert state.protection_enabled
    assert state.rule("finance").kata.enabled is False
    assert state.version == 4
    assert state.rule(None) == DEFAULT_RULE
    assert DEFAULT_RULE.kata.enabled
    assert DEFAULT_RULE.kata.action == "delete"
