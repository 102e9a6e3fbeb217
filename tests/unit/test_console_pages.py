"""What the console's pages show, from the configuration (pure page models), and how a refusal
of an admin command becomes the API's answer."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest
from markupsafe import escape

from katagate.admin.errors import InvalidCommand, NotFound, NothingToChange
from katagate.admin.labels import ACTION_LABELS, CONNECTION_STATES
from katagate.admin.rules import ACTIONS, create_rule, validate_rule_fields
from katagate.admin.settings import change_settings, set_protection, validate_settings
from katagate.console.export import rules_csv
from katagate.console.pages import (
    CONNECTION_WINDOW,
    NAVIGATION,
    SCAN_CAP_MB,
    SIZE_LIMITS_HELP,
    SMTP_LIMIT_DEFAULT_MIB,
    kata_protection_page,
    rule_page,
    rules_page,
    safe_next,
)
from katagate.console.problems import ProblemError, problem, validate_each
from katagate.schemas import DEFAULT_RULE, RESET_FIELDS, ControlState, KataSettings, evolve_control
from katagate.schemas.control import MIB

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


# -- the product's windows, exactly (issue 21) ---------------------------------------------------

def rendered(template: str, **context) -> str:
    """A page as the console serves it, from its page model (the template only lays it out)."""
    from katagate.console.web import templates

    return templates.env.get_template(template).render(
        user="admin", csrf_token="t", navigation=NAVIGATION, path="/", role="admin", **context)


def kata_window(state: ControlState) -> str:
    return rendered("kata_protection.html", page=kata_protection_page(state),
                    states=CONNECTION_STATES, connection_rows=CONNECTION_WINDOW)


@pytest.mark.parametrize("size", [1 * MIB * 3, 1_500_000])
def test_set_default_values_fills_in_exactly_the_products_four_fields_with_their_defaults(size):
    # Given settings away from every default, the quarantine size set in MB or in bytes
    state = given(lambda s, c: change_settings(s, {
        "central_node_port": 8443, "response_timeout_s": 900, "quarantine_max_bytes": size,
        "quarantine_max_messages": 10, "poll_interval_s": 5, "on_unavailable": "hold"}, **c))
    page = kata_protection_page(state)
    # When the window's "Set default values" fills in the fields that carry a default
    filled = {f.name: f.default for f in page.fields + page.policy_fields if f.default}
    # Then those are the product's reset fields, in the unit each field is shown in...
    typed = validate_settings(filled)
    assert set(typed) == set(RESET_FIELDS)
    defaults = KataSettings.defaults()
    assert typed == {name: getattr(defaults, name) for name in RESET_FIELDS}
    # ...and the page carries them for the script to fill in, with the values in force
    html = kata_window(state)
    assert ('id="field-central_node_port" value="8443" data-initial="8443" data-default="443"'
            in html)
    assert html.count("data-default=") == len(RESET_FIELDS)


def test_the_connection_window_shows_the_address_alone_and_the_port_on_its_own_line():
    rows = {row.label: row for row in CONNECTION_WINDOW}
    assert rows["KATA Central Node IPv4-address"].key == "central_node_address"
    assert rows["KATA Central Node port"].key == "central_node_port"
    html = kata_window(ControlState())
    assert ('<span id="conn-address" data-key="central_node_address">' in html)
    assert ('<span id="conn-port" data-key="central_node_port">' in html)


def test_the_gateways_key_is_labelled_as_the_documentation_names_it_with_katagates_name_in_help():
    html = kata_window(ControlState())
    assert "<dt>KSMG public key fingerprint</dt>" in html
    assert "<dt>Gateway public key fingerprint</dt>" not in html
    (row,) = [r for r in CONNECTION_WINDOW if r.key == "ksmg_public_key_fingerprint"]
    assert "katagate's Gateway public key fingerprint" in row.hint
    assert str(escape(row.hint)) in html


def test_a_rules_kata_section_warns_while_kata_protection_is_off_globally():
    # Given a rule, and KATA protection off in the application settings (the default)
    state = given(lambda s, c: create_rule(s, "sales", {}, **c))
    page = rule_page(state, state.rules["sales"])
    # Then its KATA section says so, as the documentation asks the administrator to check
    assert "KATA protection is off in the application settings" in page.protection_warning
    assert 'id="kata-protection-off"' in rendered("rule.html", page=page)
    # When protection is switched on, the warning goes
    on = given(lambda s, c: create_rule(s, "sales", {}, **c),
               lambda s, c: set_protection(s, True, **c))
    page = rule_page(on, on.rules["sales"])
    assert page.protection_warning == ""
    assert 'id="kata-protection-off"' not in rendered("rule.html", page=page)


def test_the_policy_fields_are_the_new_settings_each_with_its_range_in_the_hint():
    state = given(lambda s, c: change_settings(s, {"verdict_header_name": "X-KATA-Verdict",
                                                   "hold_outcome": "reject"}, **c))
    policy = {f.name: f for f in kata_protection_page(state).policy_fields}
    assert list(policy) == ["on_unavailable", "hold_outcome", "verdict_header_name",
                            "verdict_header_format", "verdict_cache_ttl_s"]
    # Each as the API names it, its value in force accepted as it is shown
    validate_settings({name: f.value for name, f in policy.items()})
    assert [c for c, _ in policy["on_unavailable"].choices] == ["skip", "hold", "tempfail"]
    assert [c for c, _ in policy["hold_outcome"].choices] == ["skip", "reject"]
    assert policy["hold_outcome"].shown == "Reject"
    assert policy["verdict_header_name"].value == "X-KATA-Verdict"
    assert "0..604800" in policy["verdict_cache_ttl_s"].hint
    assert "{scan_id}" in policy["verdict_header_format"].hint
    assert "empty: no header" in policy["verdict_header_name"].hint
    html = kata_window(state)
    assert '<option value="reject" selected>Reject</option>' in html


def test_a_rules_kata_section_offers_global_skip_hold_tempfail_when_kata_cannot_scan():
    state = given(lambda s, c: create_rule(s, "plain", {}, **c),
                  lambda s, c: create_rule(s, "strict", {"kata.on_unavailable": "tempfail"},
                                           **c))
    plain = rule_page(state, state.rules["plain"])
    assert [(v, s) for v, _, s in plain.on_unavailable] == [
        ("global", True), ("skip", False), ("hold", False), ("tempfail", False)]
    assert plain.on_unavailable_value == "global"
    strict = rule_page(state, state.rules["strict"])
    assert strict.on_unavailable_value == "tempfail"
    assert 'data-initial="tempfail"' in rendered("rule.html", page=strict)
    # "global" from the select is the rule's None: the global setting
    assert validate_rule_fields({"kata.on_unavailable": "global"}) == {
        "kata.on_unavailable": None}
    # And the rules export says which each rule takes
    rows = list(csv.DictReader(io.StringIO(rules_csv(state))))
    assert [(r["rule_id"], r["on_unavailable"]) for r in rows] == [
        ("plain", "global"), ("strict", "tempfail"), ("default", "global")]


def test_the_settings_help_states_the_smtp_limit_against_the_200_mb_scan_cap():
    from katagate.decider.ledger import MAX_MESSAGE_BYTES
    from katagate.ingest.settings import IngestSettings

    # The help's figures are the code's: ingest's default SMTP limit and the scan cap
    assert IngestSettings.model_fields["max_message_bytes"].default == (
        SMTP_LIMIT_DEFAULT_MIB * MIB)
    assert MAX_MESSAGE_BYTES == SCAN_CAP_MB * MIB
    html = kata_window(ControlState())
    assert SIZE_LIMITS_HELP in html
    for said in ("36 MiB", "200 MB", "max_message_bytes", "Skipped", "cannot happen"):
        assert said in SIZE_LIMITS_HELP
