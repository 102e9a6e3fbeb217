"""Upcasting: a payload published at an old version still decodes, to the current version."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from katagate.schemas import (
    UPCASTERS,
    Detect,
    SchemaError,
    VerdictReceived,
    decode_event,
    encode_event,
)
from katagate.schemas.upcasters import upcast_verdict_v1_v2
from tests.unit.fixtures.events import sample_events

V1_FIXTURE = Path(__file__).parent / "fixtures" / "scan.verdict.v1.json"


def v1_payload() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(V1_FIXTURE.read_bytes())
    return data


def test_given_a_v1_verdict_record_when_decoded_then_a_v2_verdict_with_detects() -> None:
    event = decode_event(V1_FIXTURE.read_bytes())
    assert isinstance(event, VerdictReceived)
    assert event.schema_version == 2
    assert event.state == "detect"
    assert event.detects == [
        Detect(type="sb", name=None, details=None),
        Detect(type="url_reputation", name=None, details=None),
    ]
    assert event.message_id == "01JBX9K2ZQ4T7M3N8P5R6S0VWY"


def test_given_a_v1_dict_when_decoded_then_the_input_is_unchanged() -> None:
    data = v1_payload()
    before = copy.deepcopy(data)
    decode_event(data)
    assert data == before


def test_given_a_v1_not_detected_verdict_then_detects_is_empty() -> None:
    data = {**v1_payload(), "state": "not_detected", "detect_types": []}
    event = decode_event(data)
    assert isinstance(event, VerdictReceived)
    assert event.detects == []


def test_given_the_upcaster_then_it_sets_the_version_and_drops_the_old_field() -> None:
    data = v1_payload()
    before = copy.deepcopy(data)
    out = upcast_verdict_v1_v2(data)
    assert out["schema_version"] == 2
    assert "detect_types" not in out
    assert out["detects"][0] == {"type": "sb", "name": None, "details": None}
    assert data == before
    assert out["producer"] is not data["producer"]  # no shared mutable parts either


def test_given_a_v1_record_when_its_upcaster_is_missing_then_schema_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(UPCASTERS, ("scan.verdict", 1))
    with pytest.raises(SchemaError, match=r"scan\.verdict v1: no upcaster to v2"):
        decode_event(V1_FIXTURE.read_bytes())


def test_given_an_upcaster_that_forgets_the_version_then_schema_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(UPCASTERS, ("scan.verdict", 1), lambda d: dict(d))
    with pytest.raises(SchemaError, match="did not produce schema_version 2"):
        decode_event(V1_FIXTURE.read_bytes())


def test_given_a_v1_payload_that_is_invalid_after_upcasting_then_error_names_v1() -> None:
    data = {**v1_payload(), "detect_types": ["antivirus"]}
    with pytest.raises(SchemaError, match=r"scan.verdict v1: field 'detects.0.type'"):
        decode_event(data)


ACTED = ("settings.kata_changed", "settings.kata_reset", "settings.kata_toggled",
         "rule.created", "rule.changed", "rule.deleted", "rule.kata_toggled",
         "quarantine.forced_release", "quarantine.forced_delete", "central_node.observed")


@pytest.mark.parametrize("event_type", ACTED)
def test_given_an_admin_event_written_before_actor_note_when_decoded_then_the_note_is_empty(
        event_type: str) -> None:
    # Given a record of the same version as written before the field existed
    [event] = [e for e in sample_events() if e.type == event_type]
    old = json.loads(encode_event(event))
    old.pop("actor_note")
    # When decoded, then it is the same event with no note: nothing reinterpreted
    decoded = decode_event(json.dumps(old).encode())
    assert decoded == event
    assert decoded.actor_note == ""  # type: ignore[attr-defined]
    assert decoded.schema_version == 1
