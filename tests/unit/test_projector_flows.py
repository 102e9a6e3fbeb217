"""Realistic message flows for the projector's tests (unit and integration), made from the
sample events with new ids; and the check that every flow is valid and decodes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from katagate.schemas import BackupLedgerEvent, Event, LedgerEvent, decode_event, encode_event
from tests.unit.fixtures.events import T0, sample_events

# Which topic an event goes to: "mail", "quarantine" (the ledger, a LedgerEvent; also mirrored
# to "mail"), or "control".
Routed = list[tuple[str, Event]]
SCENARIOS = ("clean", "deleted", "rejected", "count_limit", "timeout", "error")
# The administrator's daily tools: a detect delivered with the subject tag; a detect deleted
# with a Backup copy, resent, then removed; a delivery deferred and waiting, with a retry asked.
MORE_SCENARIOS = ("tagged", "backup", "queued")
ALL_SCENARIOS = SCENARIOS + MORE_SCENARIOS
SENDER_DOMAINS = ("partner.example.org", "supplier.example.net", "example.com")
SUBJECT_WORDS = ("Invoice", "Meeting notes", "Quarterly report", "Re: Invoice overdue")


def _samples() -> dict[str, Event]:
    return {e.type: e for e in sample_events()}


def _variant(template: Event, n: int, minutes: float, **update: Any) -> Event:
    """A valid copy of `template` with a fresh event id and time, and the fields given."""
    ns = uuid.UUID("0d5f1c5e-4b9a-4f5e-8d6c-3c2b1a0f9e8d")
    occurred_at = T0 + timedelta(minutes=minutes)
    fields = {**template.model_dump(), **update,
              "event_id": uuid.uuid5(ns, f"{update.get('message_id', 'control')}:{n}"),
              "occurred_at": occurred_at}
    if "deadline_at" in fields and "response_timeout_s" in fields:
        fields["deadline_at"] = occurred_at + timedelta(seconds=fields["response_timeout_s"])
    return type(template).model_validate(fields)


def message_flow(i: int, scenario: str | None = None) -> Routed:
    """The events of message i, following one of SCENARIOS (by i if not given)."""
    s = _samples()
    kind = scenario or SCENARIOS[i % len(SCENARIOS)]
    m = f"MSG{i:08d}"
    at = i * 0.5  # minutes from T0
    size = 1000 + i
    rule = "inbound-finance" if i % 2 else None
    n = iter(range(100))
    out: Routed = []

    def add(topic: str, event_type: str, minutes: float, **update: Any) -> Event:
        event = _variant(s[event_type], next(n), at + minutes, message_id=m, **update)
        out.append((topic, event))
        if isinstance(event, LedgerEvent | BackupLedgerEvent):
            out.append(("mail", event))  # the mirror: the same event on the message
        return event

    add("mail", "mail.received", 0, size=size, rule_id=rule,
        envelope_from="" if i % 7 == 6 else f"user{i % 4}@{SENDER_DOMAINS[i % 3]}",
        envelope_to=[f"rcpt{i % 3}@finance.example.com", f"All{i % 2}@Staff.Example.com"],
        subject=f"{SUBJECT_WORDS[i % 4]} {i}", client_ip=f"198.51.100.{i % 5 + 1}")
    if kind == "count_limit":
        add("quarantine", "quarantine.denied", 0.01, size=size, reason="count_limit")
        add("mail", "action.decided", 0.02, action="deliver", tag=None, backup=False,
            skipped=True, reason="count_limit")
        add("mail", "delivery.delivered", 0.03, tagged=False, attempts=1)
        return out
    add("quarantine", "quarantine.admitted", 0.01, size=size, rule_id=rule,
        bytes_in_use=size, messages_in_use=1)
    add("mail", "scan.submitted", 0.02, scan_id=m)
    decided: dict[str, Any]
    if kind == "clean":
        add("mail", "scan.verdict", 1, scan_id=m, state="not_detected", detects=[])
        decided = {"action": "deliver", "tag": None, "skipped": False, "reason": "not_detected"}
    elif kind in ("deleted", "rejected", "backup"):
        add("mail", "scan.verdict", 1, scan_id=m)  # detect, with the sample's detects
        decided = {"action": "reject" if kind == "rejected" else "delete", "tag": None,
                   "skipped": False, "reason": "detected"}
    elif kind == "tagged":
        add("mail", "scan.verdict", 1, scan_id=m)
        decided = {"action": "deliver", "tag": "[KATA detect]", "skipped": False,
                   "reason": "detected"}
    elif kind == "queued":
        add("mail", "scan.verdict", 1, scan_id=m, state="not_detected", detects=[])
        decided = {"action": "deliver", "tag": None, "skipped": False, "reason": "not_detected"}
    elif kind == "timeout":
        add("mail", "scan.timed_out", 10, scan_id=m)
        decided = {"action": "deliver", "tag": None, "skipped": True, "reason": "timeout"}
    else:
        add("mail", "scan.verdict", 1, scan_id=m, state="error", detects=[])
        decided = {"action": "deliver", "tag": None, "skipped": True, "reason": "error"}
    t = 10.01 if kind == "timeout" else 1.01
    add("mail", "action.decided", t, backup=kind == "backup", **decided)
    add("quarantine", "quarantine.released", t + 0.01, size=size, bytes_in_use=0,
        messages_in_use=0)
    if kind == "deleted":
        add("mail", "message.discarded", t + 0.02)
    elif kind == "backup":
        _backup(add, t, size, removed=i % 2 == 1)
    elif kind == "tagged":
        add("mail", "delivery.delivered", t + 0.02, tagged=True, attempts=1)
    elif kind == "queued":
        add("mail", "delivery.deferred", t + 0.02, attempt=1, retry_at=T0 + timedelta(days=1))
        add("mail", "delivery.deferred", t + 0.5, attempt=2,
            retry_at=T0 + timedelta(days=1, minutes=at))
        add("mail", "queue.action_requested", t + 0.6, action="retry")
    elif kind == "rejected":
        add("mail", "ndr.sent", t + 0.02, reason="kata_reject")
    elif kind == "timeout":
        add("mail", "delivery.deferred", t + 0.02)
        add("mail", "delivery.delivered", t + 0.5, tagged=False, attempts=2)
        add("mail", "scan.late_verdict", t + 1, scan_id=m, state="detect", after="timeout")
    elif kind == "error":
        add("mail", "delivery.failed", t + 0.02)
        add("mail", "ndr.sent", t + 0.03, reason="delivery_failed")
    else:
        add("mail", "delivery.delivered", t + 0.02, tagged=False, attempts=1)
    return out


def _backup(add: Any, t: float, size: int, removed: bool) -> None:
    """A deleted detect kept in the Backup: stored, retained, resent to an address (delivered)
    and to its recipients (deferred); removed by an administrator if `removed`."""
    add("mail", "backup.stored", t + 0.015)
    add("mail", "message.discarded", t + 0.02)
    add("quarantine", "backup.retained", t + 0.03, size=size, bytes_in_use=size,
        copies_in_use=1)
    first = add("mail", "backup.resend_requested", t + 1,
                recipients=["helpdesk@example.com"], to_original=False)
    add("mail", "backup.resent", t + 1.5, causation_id=first.event_id,
        recipients=["helpdesk@example.com"])
    second = add("mail", "backup.resend_requested", t + 2)
    add("mail", "backup.resent", t + 3, causation_id=second.event_id, outcome="deferred",
        reply="451 4.3.0 later")
    if removed:
        add("quarantine", "backup.removed", t + 4, size=size, bytes_in_use=0, copies_in_use=0)


def control_flow(start: int = 0) -> Routed:
    """Settings, protection on, our key, the Central Node's key pinned, connected."""
    s = _samples()
    events = [
        _variant(s["settings.kata_changed"], start + 1, -5, version=1,
                 settings=s["settings.kata_changed"].model_dump()["settings"]
                 | {"quarantine_max_messages": 100}),
        _variant(s["settings.kata_toggled"], start + 2, -5, version=2),
        _variant(s["sensor.key_generated"], start + 3, -4),
        _variant(s["connection.state_changed"], start + 4, -4),
        _variant(s["connection.state_changed"], start + 5, -3, state="connected",
                 previous="awaiting_confirmation", detail=""),
        _variant(s["central_node.observed"], start + 6, -3),
    ]
    return [("control", e) for e in events]


def all_flows(messages: int, scenarios: tuple[str, ...] = SCENARIOS) -> Routed:
    out = control_flow()
    for i in range(messages):
        out += message_flow(i, scenarios[i % len(scenarios)])
    return out


def test_every_flow_is_valid_and_round_trips() -> None:
    for _topic, event in all_flows(len(ALL_SCENARIOS) * 2, ALL_SCENARIOS):
        assert decode_event(encode_event(event)) == event


def test_ledger_events_are_mirrored_with_the_same_event_id() -> None:
    flow = message_flow(0, "clean")
    ledger = [(topic, e.event_id) for topic, e in flow if isinstance(e, LedgerEvent)]
    assert [t for t, _ in ledger] == ["quarantine", "mail", "quarantine", "mail"]
    assert ledger[0][1] == ledger[1][1]
