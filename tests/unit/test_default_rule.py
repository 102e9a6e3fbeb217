"""The built-in default rule, editable in its KATA section only: the admin commands (refusing
anything else with the reason), the fold (`ControlState.default_rule`, what `rule()` and
`match_rule` return, a hand-written event that tries more), and the console's pages."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from katagate.admin.errors import InvalidCommand, NothingToChange
from katagate.admin.rules import (
    change_rule,
    create_rule,
    delete_rule,
    set_rule_kata,
    validate_default_rule_fields,
    validate_deletable,
)
from katagate.console.documents import rules_document
from katagate.console.pages import rule_page, rules_page
from katagate.ingest.received import rule_for
from katagate.schemas import (
    DEFAULT_RULE,
    ControlState,
    ProducerRef,
    Rule,
    RuleChanged,
    RuleCreated,
    RuleDeleted,
    RuleKata,
    decode_event,
    encode_event,
    evolve_control,
    match_rule,
)

NOW = datetime(2026, 12, 3, 11, tzinfo=UTC)
FIXED = ("it handles mail no rule matches, so it matches any sender and recipient, is always "
         "enabled and stays last; only its KATA section can be changed")


def ids() -> dict[str, object]:
    return {"actor": "alice", "now": NOW, "event_id": uuid.uuid4()}


def refused(message: str):
    return pytest.raises(InvalidCommand, match=f"^{re.escape(message)}")


def test_given_no_change_when_the_default_rules_action_is_set_then_rule_changed_holds_it():
    # Given the built-in default rule as shipped (Delete message)
    state = ControlState()
    # When its KATA action is set to Reject and its tag removed
    event = change_rule(state, "default", {"kata.action": "reject", "kata.tag": None}, **ids())
    # Then one rule.changed for "default", everything but the KATA section as built in
    assert isinstance(event, RuleChanged)
    assert event.rule == DEFAULT_RULE.model_copy(
        update={"kata": RuleKata(action="reject", tag=None)})
    assert event.version == 1
    assert decode_event(encode_event(event)) == event
    # And the fold makes it the rule for mail no rule matches
    after = evolve_control(state, event)
    assert after.default_rule.kata.action == "reject"
    assert after.rule(None) == after.default_rule
    assert after.rule("default") == after.default_rule
    assert after.rule("gone") == after.default_rule  # a rule deleted since the mail came
    assert match_rule(after, "a@x.example", ["b@y.example"]) == after.default_rule
    assert rule_for(after, "a@x.example", ["b@y.example"]) is None
    assert after.rules == {}
    assert after.version == 1


def test_the_default_rules_kata_switch_toggles_and_a_repeat_changes_nothing():
    state = evolve_control(ControlState(), set_rule_kata(ControlState(), "default", False,
                                                         **ids()))
    assert not state.default_rule.kata.enabled
    assert state.default_rule.kata.action == "delete"  # the rest of the section is kept
    with pytest.raises(NothingToChange, match="already off"):
        set_rule_kata(state, "default", False, **ids())
    with pytest.raises(NothingToChange, match=r"^nothing to change: rule 'default'"):
        change_rule(state, "default", {"kata.enabled": "off"}, **ids())


@pytest.mark.parametrize(("fields", "field"), [
    ({"position": 5}, "position"),  # a move
    ({"enabled": "off"}, "enabled"),
    ({"senders": ["*@example.org"]}, "senders"),
    ({"recipients": ["*@example.org"]}, "recipients"),
    ({"name": "Catch-all"}, "name"),
    ({"kata.action": "skip", "position": 5}, "position"),  # nothing of it is written
])
def test_a_change_of_the_default_rule_outside_its_kata_section_is_refused(fields, field):
    with refused(f"{field}: the default rule's {field} cannot be changed: {FIXED}") as caught:
        change_rule(ControlState(), "default", fields, **ids())
    assert caught.value.field == field
    assert "kata.action" in caught.value.allowed
    with refused(f"{field}: the default rule's {field}"):
        validate_default_rule_fields("default", fields)  # the front ends' check, stateless


def test_the_default_rule_cannot_be_deleted_or_created():
    with refused(f"rule_id: the default rule cannot be deleted: {FIXED}"):
        delete_rule(ControlState(), "default", **ids())
    with refused("rule_id: the default rule cannot be deleted"):
        validate_deletable("default")
    with refused("rule_id: 'default' is the built-in rule for mail no rule matches and exists "
                 "already; change its KATA section with `rules set default`"):
        create_rule(ControlState(), "default", {}, **ids())


def test_a_hand_written_event_cannot_move_narrow_disable_or_delete_the_default_rule():
    producer = ProducerRef(stage="admin", instance="t")
    narrowed = Rule(rule_id="default", name="Mine", position=0, enabled=False,
                    senders=["*@x.example"], recipients=["nobody@x.example"],
                    kata=RuleKata(action="skip"))
    state = ControlState()
    for event in (
        RuleChanged(event_id=uuid.uuid4(), occurred_at=NOW, producer=producer, version=1,
                    actor="x", rule=narrowed),
        RuleCreated(event_id=uuid.uuid4(), occurred_at=NOW, producer=producer, version=2,
                    actor="x", rule=narrowed.model_copy(update={"kata": RuleKata()})),
        RuleDeleted(event_id=uuid.uuid4(), occurred_at=NOW, producer=producer, version=3,
                    actor="x", rule_id="default"),
    ):
        state = evolve_control(state, event)
    # Only the KATA section of rule.changed is taken; created and deleted are ignored
    assert state.default_rule == DEFAULT_RULE.model_copy(update={"kata": RuleKata(action="skip")})
    assert state.rules == {}
    assert match_rule(state, "a@y.example", ["b@y.example"]).kata.action == "skip"


def test_the_console_and_the_documents_show_the_default_rule_as_configured():
    state = evolve_control(ControlState(), change_rule(
        ControlState(), "default", {"kata.action": "skip", "kata.backup": "off"}, **ids()))
    row = rules_page(state)[-1]
    assert (row.rule_id, row.position, row.action, row.backup, row.built_in) == (
        "default", "last", "Skip", False, True)
    assert rules_document(state)["default_rule"]["kata"]["action"] == "skip"
    page = rule_page(state, state.rule("default"))
    assert page.actions[2] == ("skip", "Skip", True)
