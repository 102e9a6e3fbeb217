"""Events: every type round-trips, and bad values are rejected naming the field."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from katagate.schemas import (
    EVENT_TYPES,
    TERMINAL_OUTCOMES,
    ActionDecided,
    Event,
    KataSettings,
    KataSettingsReset,
    MailEvent,
    MessageReceived,
    SchemaError,
    SensorKeyGenerated,
    decode_event,
    encode_event,
    terminal_outcome,
)
from tests.unit.fixtures.events import CERTIFICATE_PEM, MESSAGE_ID, envelope, sample_events

SAMPLES = {event.type: event for event in sample_events()}


def sample(event_type: str) -> Event:
    return SAMPLES[event_type]


def payload_with(event_type: str, path: str, value: Any) -> dict[str, Any]:
    """The sample's JSON payload with the value at a dotted path replaced."""
    data: dict[str, Any] = json.loads(encode_event(sample(event_type)))
    *parents, leaf = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[leaf] = value
    return data


def test_given_the_samples_then_every_event_type_has_exactly_one() -> None:
    types = [event.type for event in sample_events()]
    assert sorted(types) == sorted(EVENT_TYPES)
    assert all(type(SAMPLES[name]) is cls for name, cls in EVENT_TYPES.items())


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_given_an_event_when_encoded_and_decoded_then_it_is_equal(event: Event) -> None:
    encoded = encode_event(event)
    decoded = decode_event(encoded)
    assert decoded == event
    assert type(decoded) is type(event)
    assert encode_event(decoded) == encoded
    assert decode_event(encoded.decode()) == event
    assert decode_event(json.loads(encoded)) == event


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_given_an_event_when_a_field_is_assigned_then_it_is_refused(event: Event) -> None:
    with pytest.raises(ValidationError, match="frozen"):
        event.event_id = event.event_id  # type: ignore[misc]


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_given_an_extra_field_when_decoded_then_schema_error(event: Event) -> None:
    data = json.loads(encode_event(event))
    data["unexpected"] = 1
    with pytest.raises(SchemaError, match="unexpected"):
        decode_event(data)


EXPECTED_KEYS = {
    "settings.kata_changed": "kata-settings",
    "settings.kata_reset": "kata-settings",
    "settings.kata_toggled": "kata-settings",
    "rule.created": "rule:inbound-finance",
    "rule.changed": "rule:inbound-finance",
    "rule.deleted": "rule:inbound-finance",
    "rule.kata_toggled": "rule:inbound-finance",
    "sensor.key_generated": "sensor",
    "central_node.observed": "central-node",
    "connection.state_changed": "connection",
    "settings.notifications_changed": "notification-settings",
    "quarantine.usage_recorded": "usage",  # the usage topic's one compacted key
}


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_given_an_event_then_its_partition_key_is_its_message_or_control_id(event: Event) -> None:
    if isinstance(event, MailEvent):
        assert event.partition_key() == event.message_id
    else:
        assert event.partition_key() == EXPECTED_KEYS[event.type]


def test_given_a_naive_occurred_at_then_rejected() -> None:
    fields = {**envelope(1), "occurred_at": datetime(2025, 3, 14, 9, 0)}
    with pytest.raises(ValidationError, match="occurred_at"):
        ActionDecided(
            **fields,
            message_id=MESSAGE_ID,
            action="delete",
            tag=None,
            backup=False,
            skipped=False,
            reason="detected",
        )
    with pytest.raises(SchemaError, match="occurred_at"):
        decode_event(payload_with("action.decided", "occurred_at", "2025-03-14T09:00:00"))


def test_given_an_offset_occurred_at_then_it_is_normalised_to_utc() -> None:
    local = datetime(2025, 3, 14, 12, 0, tzinfo=timezone(timedelta(hours=3)))
    event = sample("message.discarded")
    data = {**event.model_dump(), "occurred_at": local}
    rebuilt = type(event).model_validate(data)
    assert rebuilt.occurred_at == local
    assert rebuilt.occurred_at.utcoffset() == timedelta(0)
    assert b'"occurred_at":"2025-03-14T09:00:00Z"' in encode_event(rebuilt)


BAD_VALUES = [
    ("settings.kata_changed", "settings.central_node_port", 0),
    ("settings.kata_changed", "settings.central_node_port", 65536),
    ("settings.kata_changed", "settings.response_timeout_s", 59),
    ("settings.kata_changed", "settings.response_timeout_s", 86401),
    ("settings.kata_changed", "settings.quarantine_max_bytes", 1_048_575),
    ("settings.kata_changed", "settings.quarantine_max_messages", 0),
    ("settings.kata_changed", "settings.quarantine_max_messages", 4294967297),
    ("settings.kata_changed", "settings.poll_interval_s", 0),
    ("settings.kata_changed", "settings.central_node_address", "2001:db8::1"),
    ("settings.kata_changed", "settings.central_node_address", "10.0.0.256"),
    ("settings.kata_changed", "changed", ["colour"]),
    ("settings.kata_changed", "version", 0),
    ("rule.created", "rule.kata.tag", "[KATA]\r\nBcc: attacker@example.net"),
    ("rule.created", "rule.kata.tag", ""),
    ("rule.created", "rule.kata.action", "quarantine"),
    ("rule.created", "rule.rule_id", "Inbound Finance"),
    ("rule.created", "rule.senders", []),
    ("action.decided", "action", "quarantine"),
    ("action.decided", "tag", "[KATA]\nX-Injected: 1"),
    ("action.decided", "reason", "bored"),
    ("mail.received", "message_id", "01JPAX7Q 3M9KD2V8"),
    ("mail.received", "message_id", "short"),
    ("mail.received", "sha256", "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"),
    ("mail.received", "envelope_to", []),
    ("mail.received", "client_ip", "mail.example.org"),
    ("mail.received", "size", -1),
    ("mail.received", "subject", "x" * 2001),
    ("mail.received", "raw.offsets", []),
    ("mail.received", "raw.offsets", [5, 5]),
    ("mail.received", "producer.stage", "Ingest"),
    ("mail.received", "producer.instance", "ingest 0"),
    ("scan.submitted", "central_node.address", "::1"),
    ("scan.submitted", "central_node.port", 0),
    ("scan.submitted", "scan_id", "scan-id-with-dash"),
    ("scan.verdict", "state", "processing"),
    ("scan.verdict", "detects.0.type", "antivirus"),
    ("quarantine.admitted", "response_timeout_s", 59),
    ("quarantine.admitted", "limit_messages", 4294967297),
    ("quarantine.denied", "reason", "bored"),
    ("delivery.delivered", "next_hop", "mx.example.com"),
    ("delivery.delivered", "next_hop", "mx.example.com:70000"),
    ("delivery.delivered", "attempts", 0),
    ("delivery.deferred", "retry_at", "2025-03-14T09:30:00"),
    ("ndr.sent", "to", ""),
    ("sensor.key_generated", "fingerprint", "3a:f1:09"),
    ("connection.state_changed", "state", "happy"),
]


@pytest.mark.parametrize(
    ("event_type", "path", "value"),
    BAD_VALUES,
    ids=[f"{t}:{p}={v!r}"[:60] for t, p, v in BAD_VALUES],
)
def test_given_a_bad_value_when_decoded_then_the_error_names_the_field(
    event_type: str, path: str, value: Any
) -> None:
    data = payload_with(event_type, path, value)
    leaf_field = next(part for part in reversed(path.split(".")) if not part.isdigit())
    with pytest.raises(ValidationError, match=leaf_field):
        EVENT_TYPES[event_type].model_validate(data)
    with pytest.raises(SchemaError, match=rf"^{event_type} v\d: .*{leaf_field}"):
        decode_event(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"skipped": True, "action": "delete", "tag": None}, "skipped"),
        ({"reason": "not_detected", "action": "reject", "tag": None}, "not_detected"),
        ({"reason": "not_detected", "skipped": True, "tag": None}, "not_detected"),
        ({"action": "delete"}, "tag"),
        ({"reason": "timeout", "skipped": True}, "tag"),
    ],
)
def test_given_inconsistent_action_fields_then_rejected(
    changes: dict[str, Any], message: str
) -> None:
    data = {**sample("action.decided").model_dump(), **changes}
    with pytest.raises(ValidationError, match=message):
        ActionDecided.model_validate(data)


def test_given_detects_with_a_non_detect_state_then_rejected() -> None:
    with pytest.raises(SchemaError, match="detects must be empty"):
        decode_event(payload_with("scan.verdict", "state", "not_detected"))


def test_given_detect_state_without_detects_then_accepted() -> None:
    event = decode_event(payload_with("scan.verdict", "detects", []))
    assert event.type == "scan.verdict"


def test_given_a_deadline_not_matching_the_timeout_then_admission_rejected() -> None:
    with pytest.raises(SchemaError, match="deadline_at"):
        decode_event(payload_with("quarantine.admitted", "response_timeout_s", 601))


def test_given_usage_over_a_limit_then_admission_rejected() -> None:
    with pytest.raises(SchemaError, match="messages_in_use"):
        decode_event(payload_with("quarantine.admitted", "messages_in_use", 5001))


def test_given_a_reset_keeping_a_non_default_limit_then_rejected() -> None:
    data = payload_with("settings.kata_reset", "settings.central_node_port", 8443)
    with pytest.raises(ValidationError, match="central_node_port"):
        KataSettingsReset.model_validate(data)


def test_given_defaults_then_they_are_the_products() -> None:
    defaults = KataSettings.defaults()
    assert defaults.central_node_address is None
    assert defaults.central_node_port == 443
    assert defaults.response_timeout_s == 600
    assert defaults.quarantine_max_bytes == 1024 * 1_048_576
    assert defaults.quarantine_max_messages == 5000
    assert defaults.ndr_enabled is True


@pytest.mark.parametrize(
    "pem",
    [
        CERTIFICATE_PEM + "-----BEGIN PRIVATE KEY-----\nMC4CAQA=\n-----END PRIVATE KEY-----\n",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
    ],
)
def test_given_a_private_key_in_the_certificate_then_rejected(pem: str) -> None:
    data = {**sample("sensor.key_generated").model_dump(), "certificate_pem": pem}
    with pytest.raises(ValidationError, match="private key"):
        SensorKeyGenerated.model_validate(data)


def test_given_an_ipv6_client_then_accepted() -> None:
    data = payload_with("mail.received", "client_ip", "2001:db8::7")
    event = decode_event(data)
    assert isinstance(event, MessageReceived)
    assert str(event.client_ip) == "2001:db8::7"


def test_given_the_null_sender_then_accepted() -> None:
    event = decode_event(payload_with("mail.received", "envelope_from", ""))
    assert isinstance(event, MessageReceived)
    assert event.envelope_from == ""


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b'{"type": "mail.exploded", "schema_version": 1}', "unknown event type 'mail.exploded'"),
        (b'{"schema_version": 1}', "unknown event type None"),
        (b'{"type": "scan.verdict", "schema_version": 3}', "scan.verdict v3 is newer"),
        (b'{"type": "mail.received", "schema_version": 0}', "invalid schema_version 0"),
        (b'{"type": "mail.received", "schema_version": "1"}', "invalid schema_version '1'"),
        (b'{"type": "mail.received", "schema_version": true}', "invalid schema_version True"),
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_given_an_undecodable_record_then_schema_error(record: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        decode_event(record)


def test_given_a_schema_error_then_it_is_a_value_error() -> None:
    assert issubclass(SchemaError, ValueError)


@pytest.mark.parametrize("version", [True, "1", 1.0, 1.5])
def test_given_a_whole_record_with_a_version_that_is_not_an_integer_then_refused(
        version: object) -> None:
    # Given a valid record whose schema_version is not the integer 1
    record = json.loads(encode_event(sample_events()[0]))
    record["schema_version"] = version
    # Then neither the one-pass path (bytes) nor the parsed path (dict) reads it as version 1
    with pytest.raises(SchemaError, match="schema_version"):
        decode_event(json.dumps(record).encode())
    with pytest.raises(SchemaError, match="schema_version"):
        decode_event(record)


def test_given_any_sample_then_bytes_and_parsed_records_decode_alike() -> None:
    for event in sample_events():
        record = encode_event(event)
        assert decode_event(record) == decode_event(json.loads(record)) == event


def test_the_terminal_outcomes_are_exactly_the_names_terminal_outcome_gives() -> None:
    # One sample of every event, the NDR of a failed delivery beside that of a KATA reject
    events = sample_events()
    ndr = next(e for e in events if e.type == "ndr.sent")
    events.append(ndr.model_copy(update={"reason": "delivery_failed"}))
    named = [terminal_outcome(e) for e in events]
    assert sorted(o for o in named if o is not None) == sorted(TERMINAL_OUTCOMES)
