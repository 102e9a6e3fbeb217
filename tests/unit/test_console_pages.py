"""What the console's pages show, from the configuration (pure page models), and how a refusal
of an admin command becomes the API's answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from admin.errors import InvalidCommand, NotFound, NothingToChange
from admin.labels import ACTION_LABELS
from admin.rules import ACTIONS, create_rule
from admin.settings import change_settings, set_protection, validate_settings
from console.pages import (
    kata_protection_page,
    rule_page,
    rules_page,
    safe_next,
)
from console.problems import ProblemError, problem, validate_each
from schemas import DEFAULT_RULE, ControlState, evolve_control

NOW = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)


def given(*decisions) -> ControlState:
    state = ControlState()
    for decide in decisions:
        state = evolve_control(state, decide(state, {"actor": "alice", "now": NOW,
                                                     "event_id": uuid.uuid4()}))
    return state


def test_the_kata_protection_window_has_the_products_fields_labels_and_values():
    state = given(lambda s, c: change_settings(s, {"central_node_address": "192.0.2.10",
                                                   "response_timeout_s": 900}, **c),
                  lambda s, c: set_protection(s, True, **c))
    page = kata_protection_page(state)
    assert page.protection_enabled
    assert page.address_set
    assert page.version == 2
    assert [(f.label, f.value, f.unit) for f in page.fields[:5]] == [
        ("KATA Central Node IPv4-address", "192.0.2.10", ""),
        ("KATA Central Node port", "443", ""),
        ("KATA response timeout", "900", "s"),
        ("KATA Quarantine maximum size", "1024", "MB"),
        ("Maximum number of messages in KATA Quarantine", "5000", ""),
    ]
    # Each field is named as the API and the admin commands name it.
    validate_settings({f.name: f.value for f in page.fields})


def test_a_quarantine_size_set_in_bytes_is_shown_in_bytes_so_apply_does_not_round_it():
    state = given(lambda s, c: change_settings(s, {"quarantine_max_bytes": 1_500_000}, **c))
    (size,) = [f for f in kata_protection_page(state).fields
               if f.label == "KATA Quarantine maximum size"]
    assert (size.name, size.value, size.unit) == ("quarantine_max_bytes", "1500000", "bytes")


def test_an_unconfigured_gateway_shows_no_address():
    page = kata_protection_page(ControlState())
    assert not page.protection_enabled
    assert not page.address_set
    assert page.fields[0].value == ""


def test_rules_are_listed_in_matching_order_with_the_built_in_rule_last():
    state = given(lambda s, c: create_rule(s, "late", {"position": 50}, **c),
                  lambda s, c: create_rule(s, "early", {"position": 5, "kata.action": "reject",
                                                        "kata.tag": None}, **c))
    rows = rules_page(state)
    assert [(r.rule_id, r.position, r.action, r.tag) for r in rows] == [
        ("early", "5", "Reject", "(none)"),
        ("late", "50", "Delete message", "[KATA detect]"),
        ("default", "last", "Delete message", "[KATA detect]"),
    ]
    assert rows[-1].built_in
    assert not rows[0].built_in


def test_a_rules_kata_section_offers_the_three_actions_with_its_own_selected():
    state = given(lambda s, c: create_rule(s, "sales", {"kata.action": "skip"}, **c))
    page = rule_page(state, state.rules["sales"])
    assert page.actions == (("delete", "Delete message", False), ("reject", "Reject", False),
                            ("skip", "Skip", True))
    assert page.tag_set
    assert rule_page(state, DEFAULT_RULE).row.built_in


def test_the_action_labels_are_the_admin_commands_choices():
    assert tuple(ACTION_LABELS) == ACTIONS


# Each would send the browser to another site (browsers drop tab, CR and LF and read '\\' as '/').
HOSTILE_NEXT = ["//evil", "/\\evil", "/\t/evil.example", "/\n/evil", "/\r/evil", "/ /evil",
                "https://evil", "http:/evil", "javascript:alert(1)", "evil.example",
                "/\\/evil", "\\\\evil", "/\x00/evil", "/\u3000/evil", "\t//evil"]


@pytest.mark.parametrize(("asked", "went"), [
    ("/rules/sales", "/rules/sales"), ("/rules?x=1#y", "/rules?x=1#y"), (None, "/"), ("", "/"),
    *((hostile, "/") for hostile in HOSTILE_NEXT),
])
def test_after_signing_in_only_a_path_on_this_console_is_followed(asked, went):
    assert safe_next(asked) == went


def test_a_refusal_names_its_field_and_what_it_accepts():
    with pytest.raises(InvalidCommand) as caught:
        validate_settings({"central_node_port": 0})
    assert problem(caught.value).body() == {
        "error": "central_node_port: must be an integer in 1..65535, got 0",
        "field": "central_node_port", "allowed": "an integer in 1..65535"}


@pytest.mark.parametrize(("refusal", "status"), [
    (InvalidCommand("position: taken"), 422), (NotFound("rule_id: no rule 'x'"), 404),
    (NothingToChange("nothing to change: port is already 443"), 409),
])
def test_each_kind_of_refusal_has_its_status(refusal, status):
    assert problem(refusal).status == status


def test_a_message_of_the_usual_form_names_its_field_even_unasked():
    assert InvalidCommand("kata.tag: must be short").field == "kata.tag"
    assert InvalidCommand("nothing to change: x").field is None


def test_validate_each_names_every_bad_field_then_checks_them_together():
    with pytest.raises(ProblemError) as caught:
        validate_each(validate_settings, {"central_node_port": 0, "response_timeout_s": 600,
                                          "poll_interval_s": 0})
    assert [e["field"] for e in caught.value.problem.body()["errors"]] == [
        "central_node_port", "poll_interval_s"]
    with pytest.raises(ProblemError) as together:
        validate_each(validate_settings, {"quarantine_max_size_mb": 2,
                                          "quarantine_max_bytes": 2097152})
    assert together.value.problem.field == "quarantine_max_size_mb"
    assert "errors" not in together.value.problem.body()
    validate_each(validate_settings, {"central_node_port": "8443"})
