"""From an accepted transaction to MessageReceived: rule matching, settings version, the null
sender; and the settings' ranges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from katagate.ingest.received import Accepted, received_event, rule_for, sender_of
from katagate.ingest.settings import IngestSettings
from katagate.schemas import (
    ControlState,
    ProducerRef,
    RawLocation,
    Rule,
    RuleCreated,
    evolve_control,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
REF = ProducerRef(stage="ingest", instance="test")


def rule_created(rule_id: str, position: int, senders: list[str], recipients: list[str],
                 version: int) -> RuleCreated:
    return RuleCreated(
        event_id=uuid.uuid4(), occurred_at=NOW, producer=ProducerRef(stage="admin", instance="t"),
        version=version, actor="test",
        rule=Rule(rule_id=rule_id, name=rule_id, position=position, senders=senders,
                  recipients=recipients),
    )


def test_given_no_rules_when_matching_then_no_rule_id_and_version_0():
    state = ControlState()
    assert rule_for(state, "a@example.org", ["b@example.net"]) is None
    assert state.version == 0


def test_given_rules_when_matching_then_the_first_by_position_whose_patterns_match():
    state = ControlState()
    for event in (rule_created("finance", 1, ["*@example.org"], ["*@finance.example.net"], 1),
                  rule_created("all-org", 2, ["*@example.org"], ["*"], 2)):
        state = evolve_control(state, event)
    assert rule_for(state, "a@example.org", ["x@finance.example.net"]) == "finance"
    assert rule_for(state, "A@EXAMPLE.ORG", ["x@other.net"]) == "all-org"
    assert rule_for(state, "a@elsewhere.org", ["x@finance.example.net"]) is None
    assert state.version == 2


def test_the_null_sender_is_recorded_as_the_empty_string():
    assert sender_of("<>") == ""
    assert sender_of("a@example.org") == "a@example.org"


def test_the_event_carries_the_envelope_the_digest_and_the_raw_location():
    accepted = Accepted(
        message_id="01JABCDEFGHJKMNPQRSTVWXYZ0", event_id=uuid.uuid4(), occurred_at=NOW,
        envelope_from="", envelope_to=("b@example.net", "c@example.net"), client_ip="::1",
        helo="mx.example.org", tls=True, subject="hi", rule_id="finance", settings_version=7,
        data=b"raw",
    )
    location = RawLocation(topic="p.mail.raw", partition=2, offsets=[5, 6], chunk_bytes=1 << 20)
    event = received_event(accepted, REF, "0" * 64, 3, location)
    assert event.message_id == accepted.message_id
    assert event.event_id == accepted.event_id
    assert event.envelope_from == ""
    assert event.envelope_to == ["b@example.net", "c@example.net"]
    assert str(event.client_ip) == "::1"
    assert event.tls
    assert event.size == 3
    assert event.rule_id == "finance"
    assert event.settings_version == 7
    assert event.raw == location
    assert event.partition_key() == accepted.message_id


def test_settings_defaults_are_the_rfc_limits_and_no_relay():
    settings = IngestSettings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.host, settings.port) == ("127.0.0.1", 2525)
    assert settings.max_message_bytes == 36 * 1024 * 1024
    assert settings.max_recipients == 1000
    assert settings.max_line_length == 1000
    assert (settings.max_local_part, settings.max_domain, settings.max_path) == (64, 255, 256)
    assert settings.relay_domains == []
    assert settings.relay_networks == []
    assert settings.commit_timeout_s == 10.0


@pytest.mark.parametrize("overrides", [
    {"max_recipients": 99},
    {"max_recipients": 1001},
    {"max_line_length": 999},
    {"max_local_part": 63},
    {"require_tls": True},
    {"tls_cert": "cert.pem"},
    {"relay_domains": ["exa mple.org"]},
    {"relay_networks": ["10.0.0.1/8"]},
    {"commit_timeout_s": 0},
])
def test_settings_out_of_range_are_refused(overrides):
    with pytest.raises(ValidationError):
        IngestSettings(**overrides)


def test_settings_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("KATAGATE_INGEST_RELAY_DOMAINS", '["Example.NET", "*.example.org"]')
    monkeypatch.setenv("KATAGATE_INGEST_RELAY_NETWORKS", '["192.0.2.0/24"]')
    monkeypatch.setenv("KATAGATE_INGEST_PORT", "2526")
    settings = IngestSettings()
    assert settings.relay_domains == ["example.net", "*.example.org"]
    assert settings.port == 2526
    assert settings.relay_policy().decide("192.0.2.1", "x@anywhere.test") is None
