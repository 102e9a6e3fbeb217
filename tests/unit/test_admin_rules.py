"""Rules as pure commands: create, change (order, enable, patterns, the KATA section), delete and
the rule's KATA switch; each a control event with its actor and the next version, refused with
the field and its allowed values when bad."""

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
    validate_rule_fields,
)
from katagate.schemas import (
    DEFAULT_RULE,
    ControlState,
    RuleChanged,
    RuleCreated,
    RuleDeleted,
    RuleKata,
    RuleKataToggled,
    decode_event,
    encode_event,
    evolve_control,
    match_rule,
)

NOW = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)


def ids(actor: str = "alice") -> dict[str, object]:
    return {"actor": actor, "now": NOW, "event_id": uuid.uuid4()}


def given(**rules: dict[str, object]) -> ControlState:
    """The state after creating these rules, in this order."""
    state = ControlState()
    for rule_id, fields in rules.items():
        state = evolve_control(state, create_rule(state, rule_id, fields, **ids()))
    return state


def refused(message: str):
    return pytest.raises(InvalidCommand, match=f"^{re.escape(message)}$")


# --- create ---------------------------------------------------------------------------------

def test_a_new_rule_takes_the_products_defaults_for_its_kata_section():
    # Given no rules
    state = ControlState()
    event_id = uuid.uuid4()
    # When a rule is created naming only its recipients
    event = create_rule(state, "finance", {"recipients": ["*@finance.example"]}, actor="alice",
                        now=NOW, event_id=event_id)
    # Then KATA protection is on, Delete message, tag "[KATA detect]", Backup on
    assert isinstance(event, RuleCreated)
    assert event.rule.kata == RuleKata(enabled=True, action="delete", tag="[KATA detect]",
                                       backup=True)
    assert (event.rule.name, event.rule.enabled, event.rule.senders) == ("finance", True, ["*"])
    assert (event.version, event.actor, event.event_id, event.occurred_at) == (
        1, "alice", event_id, NOW)
    assert decode_event(encode_event(event)) == event
    # And ingest matches mail to it
    after = evolve_control(state, event)
    assert match_rule(after, "a@b.example", ["x@finance.example"]).rule_id == "finance"


def test_a_rule_can_be_created_with_every_field():
    event = create_rule(ControlState(), "exec", {
        "name": "Executives", "position": "3", "enabled": "off",
        "senders": ["*@partner.example"], "recipients": ["ceo@*", "cfo@*"],
        "kata.enabled": "off", "kata.action": "Reject", "kata.tag": "[!]", "kata.backup": "off",
    }, **ids())
    rule = event.rule
    assert (rule.name, rule.position, rule.enabled) == ("Executives", 3, False)
    assert (rule.senders, rule.recipients) == (["*@partner.example"], ["ceo@*", "cfo@*"])
    assert rule.kata == RuleKata(enabled=False, action="reject", tag="[!]", backup=False)


def test_new_rules_go_after_the_last_with_room_between():
    state = given(a={}, b={"position": 35})
    assert state.rules["a"].position == 0
    assert create_rule(state, "c", {}, **ids()).rule.position == 45


def test_a_duplicate_rule_id_is_refused():
    state = given(finance={})
    with refused("rule_id: a rule 'finance' already exists; change it with `rules set` or "
                 "choose another id"):
        create_rule(state, "finance", {"name": "Again"}, **ids())


@pytest.mark.parametrize("rule_id", ["Finance", "", "-x", "a b", "x" * 65, "é"])
def test_a_malformed_rule_id_is_refused(rule_id: str):
    with pytest.raises(InvalidCommand, match=r"^rule_id: must be 1\.\.64 lower-case letters"):
        create_rule(ControlState(), rule_id, {}, **ids())


def test_the_built_in_default_rule_cannot_be_created():
    # Its KATA section can be changed: tests/unit/test_default_rule.py
    with pytest.raises(InvalidCommand, match=r"^rule_id: 'default' is the built-in rule"):
        create_rule(ControlState(), "default", {}, **ids())


# --- field validation -----------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"kata.action": "quarantine"},
     "kata.action: must be one of delete, reject, skip, got 'quarantine'"),
    ({"kata.action": ""}, "kata.action: must be one of delete, reject, skip, got ''"),
    ({"kata.tag": ""},
     "kata.tag: must be 1..255 characters, not empty or only spaces, got ''"),
    ({"kata.tag": "   "},
     "kata.tag: must be 1..255 characters, not empty or only spaces, got '   '"),
    ({"kata.tag": "x" * 256}, "kata.tag: must be 1..255 characters, got 256 characters"),
    ({"kata.tag": "[KATA]\r\nBcc: victim@example.com"},
     "kata.tag: must not contain line breaks or control characters, got "
     "U+000D at character 7"),
    ({"kata.tag": "[KATA]\n"},
     "kata.tag: must not contain line breaks or control characters, got U+000A at character 7"),
    ({"kata.tag": "a\x00b"},
     "kata.tag: must not contain line breaks or control characters, got U+0000 at character 2"),
    ({"kata.tag": "a\tb"},
     "kata.tag: must not contain line breaks or control characters, got U+0009 at character 2"),
    ({"kata.tag": "a\u2028b"},
     "kata.tag: must not contain line breaks or control characters, got LINE SEPARATOR at "
     "character 2"),
    ({"kata.tag": 5}, "kata.tag: must be text of 1..255 characters, got 5"),
    ({"kata.backup": "sometimes"}, "kata.backup: must be on or off, got 'sometimes'"),
    ({"kata.on_unavailable": "later"},
     "kata.on_unavailable: must be one of global, skip, hold, tempfail, got 'later'"),
    ({"kata.enabled": "2"}, "kata.enabled: must be on or off, got 2"),
    ({"enabled": None}, "enabled: must be on or off, got None"),
    ({"position": -1}, "position: must be an integer in 0..2147483646, got -1"),
    ({"position": "first"}, "position: must be an integer in 0..2147483646, got 'first'"),
    ({"name": ""}, "name: must be 1..128 characters, not empty or only spaces, got ''"),
    ({"name": "n" * 129}, "name: must be 1..128 characters, got 129 characters"),
    ({"senders": []}, "senders: must list at least one address pattern (e.g. '*@example.com', "
                      "or '*' for any), got []"),
    ({"recipients": [""]},
     "recipients: must be 1..256 characters, not empty or only spaces, got ''"),
    ({"recipients": ["a b@example.com"]},
     "recipients: a pattern must not contain spaces, got 'a b@example.com'"),
    ({"priority": 1}, "priority: unknown rule field; known fields: name, enabled, position, "
                      "senders, recipients, kata.enabled, kata.action, kata.tag, kata.backup, "
                      "kata.on_unavailable"),
])
def test_a_bad_field_is_refused_naming_it_and_what_it_accepts(
        fields: dict[str, object], message: str):
    # Given a rule
    state = given(finance={})
    # When a bad value is given on create or change, Then both refuse it the same way
    with refused(message):
        create_rule(state, "other", fields, **ids())
    with refused(message):
        change_rule(state, "finance", fields, **ids())
    with refused(message):
        validate_rule_fields(fields)


def test_the_longest_tag_and_a_unicode_tag_are_accepted():
    state = given(finance={})
    assert change_rule(state, "finance", {"kata.tag": "x" * 255}, **ids()).rule.kata.tag == (
        "x" * 255)
    assert change_rule(state, "finance", {"kata.tag": "[KATA détecté]"},
                       **ids()).rule.kata.tag == "[KATA détecté]"


# --- change, order, enable/disable ----------------------------------------------------------

def test_changing_the_kata_section_keeps_the_rest_and_records_the_whole_rule():
    # Given a rule with a recipient pattern
    state = given(finance={"recipients": ["*@finance.example"], "name": "Finance"})
    # When its KATA action becomes Reject with no subject tag and no Backup copy
    event = change_rule(state, "finance", {"kata.action": "reject", "kata.tag": None,
                                           "kata.backup": False}, **ids("bob"))
    # Then the event carries the whole rule after the change
    assert isinstance(event, RuleChanged)
    assert event.rule.kata == RuleKata(enabled=True, action="reject", tag=None, backup=False)
    assert (event.rule.name, event.rule.recipients) == ("Finance", ["*@finance.example"])
    assert (event.version, event.actor) == (2, "bob")
    assert evolve_control(state, event).rules["finance"] == event.rule


def test_reordering_changes_which_rule_matches_first():
    # Given two rules that both match, "broad" first
    state = given(broad={}, narrow={"recipients": ["*@finance.example"]})
    assert match_rule(state, "a@x", ["b@finance.example"]).rule_id == "broad"
    # When "narrow" is moved before it
    state = evolve_control(state, change_rule(state, "broad", {"position": 5}, **ids()))
    state = evolve_control(state, change_rule(state, "narrow", {"position": 1}, **ids()))
    # Then it wins
    assert match_rule(state, "a@x", ["b@finance.example"]).rule_id == "narrow"
    assert [r.rule_id for r in state.ordered_rules()] == ["narrow", "broad"]


def test_two_rules_never_share_a_position():
    state = given(a={}, b={})
    with refused("position: 0 is taken by rule 'a'; choose a free position (rules are matched "
                 "in ascending position)"):
        change_rule(state, "b", {"position": 0}, **ids())
    with refused("position: 10 is taken by rule 'b'; choose a free position (rules are matched "
                 "in ascending position)"):
        create_rule(state, "c", {"position": "10"}, **ids())
    # A rule keeps its own position when other fields change
    assert change_rule(state, "a", {"position": 0, "name": "A"}, **ids()).rule.position == 0


def test_a_disabled_rule_stops_matching_and_can_be_enabled_again():
    state = given(finance={"recipients": ["*@finance.example"]})
    state = evolve_control(state, change_rule(state, "finance", {"enabled": "off"}, **ids()))
    assert match_rule(state, "a@x", ["b@finance.example"]) == DEFAULT_RULE
    state = evolve_control(state, change_rule(state, "finance", {"enabled": "on"}, **ids()))
    assert match_rule(state, "a@x", ["b@finance.example"]).rule_id == "finance"


def test_a_change_that_changes_nothing_is_refused():
    state = given(finance={"kata.action": "reject"})
    with refused("nothing to change: rule 'finance' already has kata.action 'reject', "
                 "kata.backup on"):
        change_rule(state, "finance", {"kata.action": "reject", "kata.backup": "on"}, **ids())


def test_a_change_naming_no_field_is_refused():
    with pytest.raises(InvalidCommand, match=r"^rule: name at least one field to change"):
        change_rule(given(finance={}), "finance", {}, **ids())


def test_changing_or_deleting_an_unknown_rule_is_refused_listing_the_rules():
    state = given(finance={}, sales={})
    message = "rule_id: no rule 'hr' (rules: finance, sales)"
    with refused(message):
        change_rule(state, "hr", {"enabled": False}, **ids())
    with refused(message):
        delete_rule(state, "hr", **ids())
    with refused(message):
        set_rule_kata(state, "hr", False, **ids())
    with refused("rule_id: no rule 'hr' (rules: none yet)"):
        delete_rule(ControlState(), "hr", **ids())


# --- delete and the rule's KATA switch ------------------------------------------------------

def test_a_deleted_rule_is_gone_and_its_mail_falls_to_the_default_rule():
    state = given(finance={"recipients": ["*@finance.example"]})
    event = delete_rule(state, "finance", **ids("carol"))
    assert isinstance(event, RuleDeleted)
    assert (event.rule_id, event.version, event.actor) == ("finance", 2, "carol")
    state = evolve_control(state, event)
    assert state.rules == {}
    assert match_rule(state, "a@x", ["b@finance.example"]) == DEFAULT_RULE


def test_the_rule_kata_switch_turns_protection_off_and_on_keeping_the_section():
    state = given(finance={"kata.action": "skip", "kata.tag": "[X]"})
    off = set_rule_kata(state, "finance", False, **ids())
    assert isinstance(off, RuleKataToggled)
    assert (off.rule_id, off.enabled, off.version) == ("finance", False, 2)
    state = evolve_control(state, off)
    assert state.rules["finance"].kata == RuleKata(enabled=False, action="skip", tag="[X]")
    on = set_rule_kata(state, "finance", True, **ids())
    assert evolve_control(state, on).rules["finance"].kata.enabled
    with refused("kata.enabled: nothing to change, KATA protection of rule 'finance' is "
                 "already off"):
        set_rule_kata(state, "finance", False, **ids())


def test_every_command_takes_the_next_version_of_the_whole_configuration():
    state = given(a={}, b={})
    events = []
    for command in (
        lambda s: change_rule(s, "a", {"position": 99}, **ids()),
        lambda s: set_rule_kata(s, "b", False, **ids()),
        lambda s: delete_rule(s, "a", **ids()),
        lambda s: create_rule(s, "c", {}, **ids()),
    ):
        event = command(state)
        events.append(event)
        state = evolve_control(state, event)
    assert [e.version for e in events] == [3, 4, 5, 6]
    assert state.version == 6


def test_a_rule_says_what_happens_when_kata_cannot_answer_or_follows_the_global_setting():
    # Given a rule created to hold its mail when KATA cannot answer
    state = given(finance={"kata.on_unavailable": "Hold"})
    assert state.rules["finance"].kata.on_unavailable == "hold"
    # When it is changed to tempfail, Then the rule's event says so
    event = change_rule(state, "finance", {"kata.on_unavailable": "tempfail"}, **ids())
    assert event.rule.kata.on_unavailable == "tempfail"
    state = evolve_control(state, event)
    # When it is set back to "global", Then it follows the global setting again (None)
    event = change_rule(state, "finance", {"kata.on_unavailable": "global"}, **ids())
    assert event.rule.kata.on_unavailable is None
    state = evolve_control(state, event)
    with pytest.raises(NothingToChange):
        change_rule(state, "finance", {"kata.on_unavailable": "global"}, **ids())
