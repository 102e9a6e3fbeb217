"""The quarantine ledger and each message's decisions, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from uuid import UUID

import pytest

from katagate.decider.decide import Messages, decide, timeouts
from katagate.decider.ledger import MAX_MESSAGE_BYTES, Ledger, admit, release
from katagate.decider.policy import Policy
from katagate.schemas import (
    DEFAULT_RULE,
    ActionDecided,
    ControlState,
    ForcedDelete,
    ForcedRelease,
    KataSettings,
    LateVerdictReceived,
    MessageReceived,
    ProducerRef,
    QuarantineAdmitted,
    QuarantineDenied,
    RawLocation,
    Rule,
    RuleKata,
    ScanTimedOut,
    VerdictReceived,
)

T0 = datetime(2026, 11, 29, 10, tzinfo=UTC)
REF = ProducerRef(stage="decider", instance="d-0")
MIB = 1024 * 1024


def received(m: str, size: int = 1000) -> MessageReceived:
    return MessageReceived(
        event_id=UUID(int=hash(m) & 0xFFFF), occurred_at=T0, producer=REF, message_id=m,
        envelope_from="a@example.org", envelope_to=["b@example.org"], client_ip="192.0.2.1",
        helo="h", tls=False, size=size, sha256="0" * 64, subject=None, rule_id=None,
        settings_version=1, raw=RawLocation(topic="r", partition=0, offsets=[0], chunk_bytes=1),
    )


def control(**settings) -> ControlState:
    kata = KataSettings(central_node_address=IPv4Address("127.0.0.1"), **settings)
    return ControlState(settings=kata, protection_enabled=True, connection="connected",
                        version=1)


class TestAdmission:
    def test_given_room_then_admitted_with_a_deadline_from_the_settings(self):
        ledger = Ledger()
        event = admit(ledger, received("m0000001"), control(response_timeout_s=60),
                      DEFAULT_RULE, T0, REF)
        assert isinstance(event, QuarantineAdmitted)
        assert event.deadline_at == T0 + timedelta(seconds=60)
        ledger.evolve(event)
        ledger.evolve(event)  # the mirror copy counts once
        assert (ledger.messages_in_use, ledger.bytes_in_use) == (1, 1000)

    @pytest.mark.parametrize(
        ("state", "rule", "size", "reason"),
        [
            (ControlState(), DEFAULT_RULE, 1, "kata_disabled"),
            (control(), Rule(rule_id="r", name="r", position=0,
                             kata=RuleKata(enabled=False)), 1, "rule_kata_disabled"),
            (ControlState(protection_enabled=True, connection="awaiting_confirmation"),
             DEFAULT_RULE, 1, "not_connected"),
            (control(), DEFAULT_RULE, MAX_MESSAGE_BYTES + 1, "too_large"),
        ],
    )
    def test_given_no_way_to_scan_then_denied_with_the_reason(self, state, rule, size, reason):
        event = admit(Ledger(), received("m0000001", size), state, rule, T0, REF)
        assert isinstance(event, QuarantineDenied)
        assert event.reason == reason

    def test_the_limits_hold_exactly_at_plus_minus_one(self):
        ledger = Ledger()
        state = control(quarantine_max_bytes=MIB, quarantine_max_messages=3)
        outcomes = []
        for i, size in enumerate([MIB // 2, MIB // 2, 1, 1]):
            event = admit(ledger, received(f"m000000{i}", size), state, DEFAULT_RULE, T0, REF)
            ledger.evolve(event)
            outcomes.append(getattr(event, "reason", "admitted"))
        assert outcomes == ["admitted", "admitted", "size_limit", "size_limit"]
        assert ledger.bytes_in_use == MIB
        small = control(quarantine_max_bytes=10 * MIB, quarantine_max_messages=2)
        ledger = Ledger()
        reasons = []
        for i in range(3):
            event = admit(ledger, received(f"n000000{i}"), small, DEFAULT_RULE, T0, REF)
            ledger.evolve(event)
            reasons.append(getattr(event, "reason", "admitted"))
        assert reasons == ["admitted", "admitted", "count_limit"]

    def test_release_frees_usage_once(self):
        ledger = Ledger()
        ledger.evolve(admit(ledger, received("m0000001"), control(), DEFAULT_RULE, T0, REF))
        cause = ForcedRelease(event_id=UUID(int=5), occurred_at=T0, producer=REF,
                              message_id="m0000001", actor="admin")
        done = release(ledger, "m0000001", "forced_release", cause, T0, REF)
        assert done is not None
        ledger.evolve(done)
        assert (ledger.messages_in_use, ledger.bytes_in_use) == (0, 0)
        assert release(ledger, "m0000001", "action_applied", cause, T0, REF) is None


def admitted_messages(m: str, timeout_s: int = 60) -> Messages:
    messages = Messages()
    messages.evolve(received(m), 0)
    ledger = Ledger()
    messages.evolve(admit(ledger, received(m), control(response_timeout_s=timeout_s),
                          DEFAULT_RULE, T0, REF), 0)
    return messages


def rule_of(kata: RuleKata):
    return lambda pending: Policy(kata)


def verdict(m: str, state: str) -> VerdictReceived:
    return VerdictReceived(event_id=UUID(int=77), occurred_at=T0, producer=REF, message_id=m,
                           scan_id=m, state=state)


class TestDecisions:
    def test_given_a_detect_and_a_reject_rule_then_reject_with_backup(self):
        messages = admitted_messages("m0000001")
        (decided,) = decide(messages, verdict("m0000001", "detect"),
                           rule_of(RuleKata(action="reject")), T0, REF)
        assert isinstance(decided, ActionDecided)
        assert (decided.action, decided.backup, decided.reason) == ("reject", True, "detected")

    def test_given_the_deadline_passes_then_timed_out_and_skipped_and_a_later_verdict_is_late(
        self,
    ):
        messages = admitted_messages("m0000001", timeout_s=60)
        assert timeouts(messages, T0 + timedelta(seconds=59), rule_of(RuleKata()), REF) == []
        timed_out, decided = timeouts(messages, T0 + timedelta(seconds=60), rule_of(RuleKata()),
                                      REF)
        assert isinstance(timed_out, ScanTimedOut)
        assert isinstance(decided, ActionDecided)
        assert (decided.action, decided.skipped, decided.reason) == ("deliver", True, "timeout")
        messages.evolve(timed_out, 0)
        messages.evolve(decided, 0)
        (late,) = decide(messages, verdict("m0000001", "detect"), rule_of(RuleKata()), T0, REF)
        assert isinstance(late, LateVerdictReceived)
        assert late.after == "timeout"

    def test_one_decision_per_message_whatever_arrives_next(self):
        messages = admitted_messages("m0000001")
        (first,) = decide(messages, verdict("m0000001", "not_detected"), rule_of(RuleKata()),
                         T0, REF)
        messages.evolve(first, 0)
        assert timeouts(messages, T0 + timedelta(days=1), rule_of(RuleKata()), REF) == []
        forced = ForcedRelease(event_id=UUID(int=9), occurred_at=T0, producer=REF,
                               message_id="m0000001", actor="admin")
        assert decide(messages, forced, rule_of(RuleKata()), T0, REF) == []

    def test_deleted_by_an_administrator_then_discarded_and_a_later_verdict_is_late(self):
        # Given a message waiting for its verdict under a rule that would deliver it
        messages = admitted_messages("m0000001")
        deleted = ForcedDelete(event_id=UUID(int=10), occurred_at=T0, producer=REF,
                               message_id="m0000001", actor="admin", comment="phishing")
        # When an administrator deletes it from the KATA Quarantine
        (decided,) = decide(messages, deleted, rule_of(RuleKata(action="skip")), T0, REF)
        # Then it is discarded without a backup, and the verdict that still comes is late
        assert isinstance(decided, ActionDecided)
        assert (decided.action, decided.backup, decided.skipped, decided.reason) == (
            "delete", False, False, "deleted_by_admin")
        messages.evolve(decided, 0)
        (late,) = decide(messages, verdict("m0000001", "detect"), rule_of(RuleKata()), T0, REF)
        assert isinstance(late, LateVerdictReceived)
        assert late.after == "deleted_by_admin"

    def test_a_redone_step_makes_the_same_event(self):
        first = decide(admitted_messages("m0000001"), verdict("m0000001", "detect"),
                      rule_of(RuleKata()), T0, REF)
        again = decide(admitted_messages("m0000001"), verdict("m0000001", "detect"),
                      rule_of(RuleKata()), T0, REF)
        assert first[0].event_id == again[0].event_id


class TestWhatDecisionsKeep:
    """Memory bounded by what is undecided, not by the mail carried (10k vs 100k messages)."""

    def run(self, count: int) -> Messages:
        messages = Messages()
        ledger = Ledger()
        for n in range(count):
            m = f"m{n:07d}"
            messages.evolve(received(m), 0)
            admitted = admit(ledger, received(m), control(response_timeout_s=600), DEFAULT_RULE,
                             T0, REF)
            messages.evolve(admitted, 0)
            (decided,) = decide(messages, verdict(m, "not_detected"), rule_of(RuleKata()), T0,
                               REF)
            messages.evolve(decided, 0)
        return messages

    def test_messages_decided_by_their_verdict_are_not_remembered(self):
        messages = self.run(5000)
        assert messages.pending == {}
        assert len(messages.decided) == 0
        # Their deadlines are gone from the heap too, though none has passed.
        assert len(messages._deadlines) <= 1000

    def test_a_timed_out_message_is_remembered_for_its_late_verdict(self):
        messages = admitted_messages("m0000001", timeout_s=60)
        for event in timeouts(messages, T0 + timedelta(seconds=60), rule_of(RuleKata()), REF):
            messages.evolve(event, 0)
        assert list(messages.decided) == ["m0000001"]

    def test_a_second_verdict_after_a_verdict_decision_changes_nothing(self):
        messages = self.run(1)
        assert decide(messages, verdict("m0000000", "detect"), rule_of(RuleKata()), T0, REF) == []
