"""The KATA Protection window as pure commands: each change is a validated control event with
its actor and the next version; a bad value or a change that changes nothing is refused."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address

import pytest

from katagate.admin.errors import InvalidCommand
from katagate.admin.settings import (
    PARSERS,
    SETTING_NAMES,
    change_settings,
    reset_settings,
    set_protection,
    validate_settings,
)
from katagate.schemas import (
    RESET_FIELDS,
    ControlState,
    KataProtectionToggled,
    KataSettings,
    KataSettingsChanged,
    KataSettingsReset,
    decode_event,
    encode_event,
    evolve_control,
)

NOW = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
MIB = 1_048_576
WHO = {"actor": "alice", "now": NOW}


def ids() -> dict[str, object]:
    return {**WHO, "event_id": uuid.uuid4()}


def given(*changes: dict[str, object]) -> ControlState:
    """The state after these settings changes were applied, each as its own event."""
    state = ControlState()
    for change in changes:
        state = evolve_control(state, change_settings(state, change, **ids()))
    return state


def refused(message: str):
    return pytest.raises(InvalidCommand, match=f"^{re.escape(message)}$")


# --- changes that are written ---------------------------------------------------------------

def test_a_change_records_the_new_settings_the_changed_fields_the_actor_and_next_version():
    # Given a gateway configured once (version 1)
    state = given({"central_node_address": "192.0.2.10"})
    event_id = uuid.uuid4()
    # When the administrator sets the port and the response timeout
    event = change_settings(state, {"central_node_port": "8443", "response_timeout_s": 900},
                            actor="alice", now=NOW, event_id=event_id)
    # Then one event holds the whole settings after the change
    assert isinstance(event, KataSettingsChanged)
    assert event.settings == KataSettings(central_node_address=IPv4Address("192.0.2.10"),
                                          central_node_port=8443, response_timeout_s=900)
    assert event.changed == ["central_node_port", "response_timeout_s"]
    assert (event.version, event.actor, event.event_id, event.occurred_at) == (
        2, "alice", event_id, NOW)
    assert event.producer.stage == "admin"
    # And it survives the wire unchanged
    assert decode_event(encode_event(event)) == event


def test_the_quarantine_size_is_given_in_megabytes_and_stored_in_bytes():
    event = change_settings(ControlState(), {"quarantine_max_size_mb": "1"}, **ids())
    assert event.settings.quarantine_max_bytes == MIB
    assert event.changed == ["quarantine_max_bytes"]
    event = change_settings(ControlState(), {"quarantine_max_bytes": 3 * MIB}, **ids())
    assert event.settings.quarantine_max_bytes == 3 * MIB


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("central_node_address", " 10.1.2.3 ", IPv4Address("10.1.2.3")),
    ("central_node_address", IPv4Address("127.0.0.1"), IPv4Address("127.0.0.1")),
    ("central_node_port", 1, 1),
    ("central_node_port", "65535", 65535),
    ("response_timeout_s", "60", 60),
    ("response_timeout_s", 86400, 86400),
    ("quarantine_max_messages", 1, 1),
    ("quarantine_max_messages", "4294967296", 4294967296),
    ("ndr_enabled", "off", False),
    ("ndr_enabled", False, False),
    ("poll_interval_s", "1", 1),
    ("poll_interval_s", 3600, 3600),
])
def test_the_bounds_of_each_range_are_accepted(name: str, value: object, expected: object):
    event = change_settings(ControlState(), {name: value}, **ids())
    assert getattr(event.settings, name) == expected


def test_the_versions_increase_with_every_change_and_the_fold_keeps_the_last():
    state = ControlState()
    versions = []
    for port in (444, 445, 446):
        event = change_settings(state, {"central_node_port": port}, **ids())
        versions.append(event.version)
        state = evolve_control(state, event)
    assert versions == [1, 2, 3]
    assert state.settings.central_node_port == 446


# --- refusals: each names the field and its range, and nothing is returned -----------------

@pytest.mark.parametrize(("name", "value", "message"), [
    ("central_node_address", "kata.example.com",
     "central_node_address: must be an IPv4 address (e.g. 192.0.2.10), got 'kata.example.com'"),
    ("central_node_address", "192.0.2.300",
     "central_node_address: must be an IPv4 address (e.g. 192.0.2.10), got '192.0.2.300'"),
    ("central_node_address", "2001:db8::1",
     "central_node_address: must be an IPv4 address (e.g. 192.0.2.10), got '2001:db8::1'"),
    ("central_node_address", "",
     "central_node_address: must be an IPv4 address (e.g. 192.0.2.10), got ''"),
    ("central_node_address", "0.0.0.0",  # noqa: S104 (a value refused, nothing binds)
     "central_node_address: must be the unicast IPv4 address of a server, got '0.0.0.0'"),
    ("central_node_address", "224.0.0.1",
     "central_node_address: must be the unicast IPv4 address of a server, got '224.0.0.1'"),
    ("central_node_port", 0, "central_node_port: must be an integer in 1..65535, got 0"),
    ("central_node_port", "65536", "central_node_port: must be an integer in 1..65535, got 65536"),
    ("central_node_port", "https",
     "central_node_port: must be an integer in 1..65535, got 'https'"),
    ("central_node_port", True, "central_node_port: must be an integer in 1..65535, got True"),
    ("response_timeout_s", 30,
     "response_timeout_s: must be an integer in 60..86400 seconds, got 30"),
    ("response_timeout_s", "86401",
     "response_timeout_s: must be an integer in 60..86400 seconds, got 86401"),
    ("response_timeout_s", "1.5",
     "response_timeout_s: must be an integer in 60..86400 seconds, got '1.5'"),
    ("quarantine_max_size_mb", 0,
     "quarantine_max_size_mb: must be an integer in 1..8796093022207 MB, got 0"),
    ("quarantine_max_size_mb", "-5",
     "quarantine_max_size_mb: must be an integer in 1..8796093022207 MB, got -5"),
    ("quarantine_max_bytes", MIB - 1,
     "quarantine_max_bytes: must be an integer in 1048576..9223372036854775807 bytes "
     "(1 MB = 1048576 bytes), got 1048575"),
    ("quarantine_max_messages", 0,
     "quarantine_max_messages: must be an integer in 1..4294967296, got 0"),
    ("quarantine_max_messages", 4294967297,
     "quarantine_max_messages: must be an integer in 1..4294967296, got 4294967297"),
    ("ndr_enabled", "maybe", "ndr_enabled: must be on or off, got 'maybe'"),
    ("poll_interval_s", 0, "poll_interval_s: must be an integer in 1..3600 seconds, got 0"),
])
def test_a_value_out_of_range_is_refused_naming_the_field_and_range(
        name: str, value: object, message: str):
    # Given a configured gateway
    state = given({"central_node_address": "192.0.2.10"})
    # When a value outside the documented range is given, Then the command is refused
    with refused(message):
        change_settings(state, {name: value}, **ids())
    # And validation alone (before any Kafka contact) refuses it the same way
    with refused(message):
        validate_settings({name: value})


def test_an_unknown_setting_is_refused_listing_the_known_ones():
    with pytest.raises(InvalidCommand, match=r"^central_node_ip: unknown setting; known "
                                             r"settings: central_node_address, .*poll_interval_s"):
        change_settings(ControlState(), {"central_node_ip": "192.0.2.1"}, **ids())


def test_a_command_naming_no_setting_is_refused():
    with pytest.raises(InvalidCommand, match=r"^settings: name at least one setting"):
        change_settings(ControlState(), {}, **ids())


def test_the_size_in_both_units_at_once_is_refused():
    with pytest.raises(InvalidCommand, match=r"^quarantine_max_size_mb: give the quarantine size "
                                             "once"):
        validate_settings({"quarantine_max_size_mb": 5, "quarantine_max_bytes": 5 * MIB})


def test_a_change_that_changes_nothing_is_refused():
    # Given port 8443 in force
    state = given({"central_node_port": 8443})
    # When the same value is applied again, Then it is refused with what is already in force
    with refused("nothing to change: central_node_port is already 8443, "
                 "quarantine_max_bytes is already 1024 MB"):
        change_settings(state, {"central_node_port": "8443", "quarantine_max_size_mb": 1024},
                        **ids())


def test_the_first_bad_field_wins_and_good_fields_beside_it_are_not_applied():
    state = ControlState()
    with refused("response_timeout_s: must be an integer in 60..86400 seconds, got 59"):
        change_settings(state, {"central_node_port": 444, "response_timeout_s": 59}, **ids())
    assert state == ControlState()


@pytest.mark.parametrize("actor", ["", "   ", "a\nb", "x" * 129])
def test_a_bad_actor_is_refused(actor: str):
    with pytest.raises(InvalidCommand, match=r"^actor: "):
        change_settings(ControlState(), {"central_node_port": 444}, actor=actor, now=NOW,
                        event_id=uuid.uuid4())


def test_an_actor_with_spaces_is_recorded_as_given():
    event = change_settings(ControlState(), {"central_node_port": 444}, actor="Jane Doe",
                            now=NOW, event_id=uuid.uuid4())
    assert event.actor == "Jane Doe"
    assert event.producer.instance == "Jane_Doe"


def test_every_settings_field_has_a_validator():
    # A field added to KataSettings must get a parser (and a range) in admin.settings too.
    assert set(PARSERS) == set(KataSettings.model_fields)
    assert set(SETTING_NAMES) == set(KataSettings.model_fields) | {"quarantine_max_size_mb"}


# --- "Set default values" -------------------------------------------------------------------

def test_set_default_values_resets_exactly_the_four_documented_fields():
    # Given every setting changed from its default
    state = given({
        "central_node_address": "192.0.2.10", "central_node_port": 8443,
        "response_timeout_s": 120, "quarantine_max_size_mb": 10,
        "quarantine_max_messages": 7, "ndr_enabled": "off", "poll_interval_s": 5,
        "backup_max_age_days": 7, "backup_max_bytes": 2 * MIB,
    })
    # When the administrator clicks "Set default values"
    event = reset_settings(state, actor="bob", now=NOW, event_id=uuid.uuid4())
    # Then port 443, timeout 600 s, 1024 MB and 5000 messages are back
    assert isinstance(event, KataSettingsReset)
    assert (event.settings.central_node_port, event.settings.response_timeout_s,
            event.settings.quarantine_max_bytes, event.settings.quarantine_max_messages) == (
        443, 600, 1024 * MIB, 5000)
    # And nothing else moved
    untouched = set(KataSettings.model_fields) - set(RESET_FIELDS)
    # (the Backup's retention is not in the KATA Protection window the button belongs to)
    assert untouched == {"central_node_address", "ndr_enabled", "poll_interval_s",
                         "backup_max_age_days", "backup_max_bytes", "on_unavailable",
                         "hold_outcome", "verdict_header_name", "verdict_header_format",
                         "verdict_cache_ttl_s"}
    for name in untouched:
        assert getattr(event.settings, name) == getattr(state.settings, name)
    assert (event.version, event.actor) == (state.version + 1, "bob")
    assert evolve_control(state, event).settings == event.settings


def test_set_default_values_when_they_are_in_force_is_refused():
    state = given({"central_node_address": "192.0.2.10", "ndr_enabled": False})
    with pytest.raises(InvalidCommand, match=r"^nothing to change: the defaults are already in "
                                             r"force \(central_node_port 443, response_timeout_s "
                                             r"600 s, quarantine_max_bytes 1024 MB, "
                                             r"quarantine_max_messages 5000\)$"):
        reset_settings(state, **ids())


# --- the global KATA protection switch ------------------------------------------------------

def test_the_global_switch_turns_protection_on_and_off_with_increasing_versions():
    state = given({"central_node_address": "192.0.2.10"})
    on = set_protection(state, True, actor="carol", now=NOW, event_id=uuid.uuid4())
    assert isinstance(on, KataProtectionToggled)
    assert (on.enabled, on.version, on.actor) == (True, 2, "carol")
    state = evolve_control(state, on)
    assert state.protection_enabled
    off = set_protection(state, False, **ids())
    assert (off.enabled, off.version) == (False, 3)
    assert not evolve_control(state, off).protection_enabled


def test_switching_protection_to_the_state_it_is_in_is_refused():
    with refused("kata_protection: nothing to change, already disabled"):
        set_protection(ControlState(), False, **ids())


def test_the_policy_settings_are_parsed_and_refused_by_name() -> None:
    # Given each of the policy's settings, When given good and bad values, Then the typed value
    # comes back or the refusal names the setting and what it allows
    typed = validate_settings({"on_unavailable": "Hold", "hold_outcome": "reject",
                               "verdict_header_name": "X-KATA-Verdict",
                               "verdict_header_format": "{verdict}; id={message_id}",
                               "verdict_cache_ttl_s": "0"})
    assert typed == {"on_unavailable": "hold", "hold_outcome": "reject",
                     "verdict_header_name": "X-KATA-Verdict",
                     "verdict_header_format": "{verdict}; id={message_id}",
                     "verdict_cache_ttl_s": 0}
    assert validate_settings({"verdict_header_name": "off"}) == {"verdict_header_name": None}
    for name, bad, said in [("on_unavailable", "drop", "skip, hold, tempfail"),
                            ("verdict_header_name", "X KATA", "letters, digits"),
                            ("verdict_header_format", "{sender}", "unknown placeholder {sender}"),
                            ("verdict_cache_ttl_s", "604801", "0..604800")]:
        with pytest.raises(InvalidCommand, match=name) as refused:
            validate_settings({name: bad})
        assert said in str(refused.value)


@pytest.mark.parametrize("name", ["Received", "subject", "From", "To", "Cc", "Date",
                                  "Message-ID", "Content-Type", "content-transfer-encoding",
                                  "MIME-Version", "DKIM-Signature", "ARC-Seal",
                                  "Authentication-Results", "Return-Path", "Sender",
                                  "Reply-To", "X-Katagate-Released-From-Backup"])
def test_a_structural_or_trace_field_is_refused_as_the_verdict_header_name(name):
    # Given a name apply would strip from every delivered message, When it is set, Then the
    # refusal names the setting and why, and nothing is changed
    with pytest.raises(InvalidCommand, match="verdict_header_name") as refused:
        validate_settings({"verdict_header_name": name})
    assert "structural or trace field: apply would strip it from every delivered" in str(
        refused.value)


@pytest.mark.parametrize(("fmt", "said"), [
    ("{verdict:>99999}", "placeholder {verdict} takes no format spec or conversion"),
    ("{verdict!r}", "placeholder {verdict} takes no format spec or conversion"),
    ("x {scan_id:{detects}}", "placeholder {scan_id} takes no format spec or conversion"),
    ("{verdict.upper}", "unknown placeholder {verdict.upper}"),
    ("{}", "unknown placeholder {}"),
])
def test_a_verdict_header_format_with_a_spec_or_conversion_is_refused(fmt, said):
    # Given a format whose placeholder is more than a bare {name}, When it is set, Then refused
    with pytest.raises(InvalidCommand, match="verdict_header_format") as refused:
        validate_settings({"verdict_header_format": fmt})
    assert said in str(refused.value)
