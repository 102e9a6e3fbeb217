"""What happens when KATA cannot answer (`on_unavailable`: skip, hold, tempfail; `hold_outcome`),
as pure decisions: the policy table, admission's waiting list, the end of a hold."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from katagate.decider.decide import Messages, decide, timeouts
from katagate.decider.ledger import Ledger, admit, admit_waiting, end_hold, release
from katagate.decider.policy import Decision, Policy, policy_of
from katagate.decider.policy import decide as policy_decide
from katagate.schemas import (
    DEFAULT_RULE,
    UNAVAILABLE_REASONS,
    ActionDecided,
    ControlState,
    ForcedRelease,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineHeld,
    QuarantineHoldEnded,
    Rule,
    RuleKata,
    ScanTimedOut,
    on_unavailable_of,
)
from tests.unit.test_decider_core import REF, T0, control, received, verdict

MIB = 1024 * 1024


def rule(on_unavailable: str | None = None, enabled: bool = True) -> Rule:
    return Rule(rule_id="r1", name="r1", position=0,
                kata=RuleKata(enabled=enabled, on_unavailable=on_unavailable))


def holding(**settings) -> ControlState:
    """KATA protection on, connected, the global on_unavailable = hold."""
    state = control(on_unavailable="hold", **settings)
    return state


class TestTheRulesChoice:
    def test_the_rules_own_value_wins_else_the_global_one(self):
        state = control(on_unavailable="tempfail")
        assert on_unavailable_of(state, rule()) == "tempfail"
        assert on_unavailable_of(state, rule("skip")) == "skip"
        assert on_unavailable_of(control(), rule("hold")) == "hold"
        assert on_unavailable_of(control(), DEFAULT_RULE) == "skip"

    def test_the_policy_of_a_message_is_taken_at_its_settings_version(self):
        state = control(on_unavailable="hold", hold_outcome="reject")
        assert policy_of(state, None) == Policy(DEFAULT_RULE.kata, "hold", "reject")


class TestThePolicyTable:
    @pytest.mark.parametrize("reason", sorted(UNAVAILABLE_REASONS))
    def test_given_skip_then_skipped_as_before(self, reason):
        assert policy_decide(reason, RuleKata(), "skip", "reject") == Decision(
            "deliver", None, backup=False, skipped=True, reason=reason)

    @pytest.mark.parametrize("policy", ["hold", "tempfail"])
    @pytest.mark.parametrize("reason", sorted(UNAVAILABLE_REASONS))
    def test_given_hold_when_kata_did_not_answer_then_hold_outcome_decides(self, reason, policy):
        assert policy_decide(reason, RuleKata(), policy, "skip") == Decision(
            "deliver", None, backup=False, skipped=True, reason=reason, held=True)
        assert policy_decide(reason, RuleKata(), policy, "reject") == Decision(
            "reject", None, backup=False, skipped=False, reason=reason, held=True)

    @pytest.mark.parametrize("reason", ["kata_disabled", "rule_kata_disabled", "forced_release"])
    def test_given_hold_when_protection_is_off_or_an_admin_released_then_skipped_not_held(
            self, reason):
        # A deliberate choice, not unavailability: delivered unscanned as ever.
        assert policy_decide(reason, RuleKata(), "hold", "reject") == Decision(
            "deliver", None, backup=False, skipped=True, reason=reason)

    def test_given_hold_a_verdict_decides_as_the_rule_says(self):
        assert policy_decide("detect", RuleKata(action="delete"), "hold", "skip").action == "delete"
        assert policy_decide("not_detected", RuleKata(), "hold", "reject").action == "deliver"


class TestAdmissionUnderHold:
    def test_given_skip_and_not_connected_then_denied_as_before(self):
        state = control(quarantine_max_messages=5)
        disconnected = ControlState(settings=state.settings, protection_enabled=True,
                                    connection="unreachable", version=1)
        event = admit(Ledger(), received("m0000001"), disconnected, DEFAULT_RULE, T0, REF)
        assert isinstance(event, QuarantineDenied)
        assert event.reason == "not_connected"

    def test_given_hold_and_not_connected_then_admitted_and_counted_against_the_limits(self):
        settings = holding().settings
        disconnected = ControlState(settings=settings, protection_enabled=True,
                                    connection="unreachable", version=1)
        ledger = Ledger()
        event = admit(ledger, received("m0000001"), disconnected, DEFAULT_RULE, T0, REF)
        assert isinstance(event, QuarantineAdmitted)
        ledger.evolve(event)
        assert ledger.messages_in_use == 1

    def test_given_a_rule_that_holds_under_a_global_skip_then_its_mail_is_admitted(self):
        disconnected = ControlState(settings=control().settings, protection_enabled=True,
                                    connection="connecting", version=1)
        event = admit(Ledger(), received("m0000001"), disconnected, rule("hold"), T0, REF)
        assert isinstance(event, QuarantineAdmitted)

    @pytest.mark.parametrize(("state", "the_rule", "reason"), [
        (ControlState(settings=holding().settings, connection="connected"), DEFAULT_RULE,
         "kata_disabled"),
        (holding(), rule(enabled=False), "rule_kata_disabled"),
    ])
    def test_given_hold_when_protection_is_off_then_denied_so_delivered_unscanned(
            self, state, the_rule, reason):
        event = admit(Ledger(), received("m0000001"), state, the_rule, T0, REF)
        assert isinstance(event, QuarantineDenied)
        assert event.reason == reason

    def test_given_hold_and_the_quarantine_full_then_held_outside_with_a_deadline(self):
        state = holding(quarantine_max_messages=1, response_timeout_s=60)
        ledger = Ledger()
        ledger.evolve(admit(ledger, received("m0000001"), state, DEFAULT_RULE, T0, REF))
        held = admit(ledger, received("m0000002"), state, DEFAULT_RULE, T0, REF)
        assert isinstance(held, QuarantineHeld)
        assert (held.reason, held.waiting, held.deadline_at) == (
            "count_limit", 1, T0 + timedelta(seconds=60))
        ledger.evolve(held)
        assert (ledger.messages_in_use, list(ledger.waiting)) == (1, ["m0000002"])

    def test_given_one_waiting_then_a_newcomer_that_would_fit_waits_behind_it(self):
        # Given a big message waiting for bytes and room for a small one
        state = holding(quarantine_max_bytes=MIB)
        ledger = Ledger()
        ledger.evolve(admit(ledger, received("m0000001", MIB // 2), state, DEFAULT_RULE, T0, REF))
        ledger.evolve(admit(ledger, received("m0000002", MIB // 2 + 1), state, DEFAULT_RULE, T0,
                            REF))
        assert list(ledger.waiting) == ["m0000002"]
        # When a small one comes, Then it waits too: nobody overtakes
        small = admit(ledger, received("m0000003", 10), state, DEFAULT_RULE, T0, REF)
        assert isinstance(small, QuarantineHeld)
        assert small.waiting == 2

    @pytest.mark.parametrize(("size", "reason"), [
        (MIB + 1, "size_limit"),  # larger than the whole quarantine: room never comes
        (200 * MIB + 1, "too_large"),  # over the 200 MB scan cap: never scanned
    ])
    def test_given_hold_when_a_message_can_never_go_in_then_denied_at_once(self, size, reason):
        state = holding(quarantine_max_bytes=MIB if reason == "size_limit" else 1024 * MIB)
        event = admit(Ledger(), received("m0000001", size), state, DEFAULT_RULE, T0, REF)
        assert isinstance(event, QuarantineDenied)
        assert event.reason == reason


def full_ledger(*waiting: tuple[str, int], max_bytes: int = MIB) -> tuple[Ledger, ControlState]:
    state = holding(quarantine_max_messages=1, quarantine_max_bytes=max_bytes)
    ledger = Ledger()
    ledger.evolve(admit(ledger, received("m0000000"), state, DEFAULT_RULE, T0, REF))
    for m, size in waiting:
        held = admit(ledger, received(m, size), state, DEFAULT_RULE, T0, REF)
        assert isinstance(held, QuarantineHeld)
        ledger.evolve(held)
    return ledger, state


def released(ledger: Ledger, m: str) -> None:
    cause = ForcedRelease(event_id=UUID(int=5), occurred_at=T0, producer=REF, message_id=m,
                          actor="admin")
    done = release(ledger, m, "action_applied", cause, T0, REF)
    assert done is not None
    ledger.evolve(done)


class TestTheWaitingList:
    def test_given_room_frees_up_then_the_oldest_goes_in_first_within_the_limits(self):
        ledger, state = full_ledger(("m0000001", 100), ("m0000002", 100))
        assert admit_waiting(ledger, state, T0, REF) == []  # full: nobody goes in
        released(ledger, "m0000000")
        later = T0 + timedelta(seconds=30)
        (admitted,) = admit_waiting(ledger, state, later, REF)
        assert (admitted.message_id, admitted.messages_in_use, admitted.bytes_in_use) == (
            "m0000001", 1, 100)
        # A fresh response timeout for the scan, from its admission.
        assert admitted.deadline_at == later + timedelta(seconds=state.settings.response_timeout_s)
        ledger.evolve(admitted)
        assert list(ledger.waiting) == ["m0000002"]

    def test_given_raised_limits_then_as_many_as_fit_go_in_in_one_step(self):
        ledger, _ = full_ledger(("m0000001", 100), ("m0000002", 100), ("m0000003", 100))
        raised = holding(quarantine_max_messages=3)
        admitted = admit_waiting(ledger, raised, T0, REF)
        assert [(a.message_id, a.messages_in_use) for a in admitted] == [
            ("m0000001", 2), ("m0000002", 3)]

    def test_given_the_oldest_does_not_fit_then_nobody_overtakes_it(self):
        ledger, _ = full_ledger(("m0000001", MIB - 500), ("m0000002", 10))  # 1000 B held
        roomy = holding(quarantine_max_messages=10, quarantine_max_bytes=MIB)
        assert admit_waiting(ledger, roomy, T0, REF) == []

    def test_a_message_decided_while_waiting_leaves_the_list_and_frees_nothing(self):
        ledger, _ = full_ledger(("m0000001", 100), ("m0000002", 100))
        cause = ForcedRelease(event_id=UUID(int=6), occurred_at=T0, producer=REF,
                              message_id="m0000001", actor="admin")
        assert release(ledger, "m0000001", "action_applied", cause, T0, REF) is None
        ended = end_hold(ledger, "m0000001", "action_applied", cause, T0, REF)
        assert isinstance(ended, QuarantineHoldEnded)
        assert (ended.waiting, ended.messages_in_use) == (1, 1)
        ledger.evolve(ended)
        assert list(ledger.waiting) == ["m0000002"]
        assert end_hold(ledger, "m0000001", "action_applied", cause, T0, REF) is None

    def test_the_waiting_list_folded_from_the_log_equals_the_live_one(self):
        ledger, state = full_ledger(("m0000001", 100), ("m0000002", 200), ("m0000003", 300))
        log = []
        replayed = Ledger()
        # The ledger topic's events, as admission wrote them, each read twice (the mirror).
        live = Ledger()
        for m, size in [("m0000000", 1000), ("m0000001", 100), ("m0000002", 200),
                        ("m0000003", 300)]:
            event = admit(live, received(m, size), state, DEFAULT_RULE, T0, REF)
            live.evolve(event)
            log.append(event)
        released(live, "m0000000")
        (admitted,) = admit_waiting(live, state, T0, REF)
        live.evolve(admitted)
        log.append(admitted)
        for event in log:
            replayed.evolve(event)
            replayed.evolve(event)
        assert list(replayed.waiting) == list(live.waiting) == ["m0000002", "m0000003"]
        assert list(ledger.waiting) == ["m0000001", "m0000002", "m0000003"]


class TestTheEndOfAHold:
    def held_messages(self, timeout_s: int = 60) -> tuple[Messages, QuarantineHeld]:
        ledger, state = full_ledger()
        state = holding(quarantine_max_messages=1, response_timeout_s=timeout_s)
        messages = Messages()
        messages.evolve(received("m0000001"), 0)
        held = admit(ledger, received("m0000001"), state, DEFAULT_RULE, T0, REF)
        assert isinstance(held, QuarantineHeld)
        messages.evolve(held, 0)
        return messages, held

    @pytest.mark.parametrize(("outcome", "action", "skipped"), [
        ("skip", "deliver", True), ("reject", "reject", False)])
    def test_given_a_held_message_when_its_timeout_ends_then_hold_outcome_decides(
            self, outcome, action, skipped):
        messages, _ = self.held_messages(timeout_s=60)
        policy = Policy(RuleKata(), "hold", outcome)
        assert timeouts(messages, T0 + timedelta(seconds=59), lambda _p: policy, REF) == []
        timed_out, decided = timeouts(messages, T0 + timedelta(seconds=60), lambda _p: policy,
                                      REF)
        assert isinstance(timed_out, ScanTimedOut)
        assert timed_out.scan_id is None
        assert isinstance(decided, ActionDecided)
        assert (decided.action, decided.skipped, decided.reason, decided.held) == (
            action, skipped, "timeout", True)

    def test_given_a_held_message_admitted_later_then_the_admissions_deadline_counts(self):
        messages, _ = self.held_messages(timeout_s=60)
        later = T0 + timedelta(seconds=30)
        ledger = Ledger()
        admitted = admit(ledger, received("m0000001"), holding(response_timeout_s=60),
                         DEFAULT_RULE, later, REF)
        messages.evolve(admitted, 0)
        policy = Policy(RuleKata(), "hold", "reject")
        # The hold's own deadline passes: nothing, the scan has its own time now.
        assert timeouts(messages, T0 + timedelta(seconds=61), lambda _p: policy, REF) == []
        (_, decided) = timeouts(messages, later + timedelta(seconds=60), lambda _p: policy, REF)
        assert (decided.action, decided.held) == ("reject", True)

    def test_given_a_held_message_when_the_verdict_comes_then_the_rule_decides(self):
        messages, _ = self.held_messages()
        (decided,) = decide(messages, verdict("m0000001", "not_detected"),
                            lambda _p: Policy(RuleKata(), "hold", "reject"), T0, REF)
        assert (decided.action, decided.held, decided.reason) == ("deliver", False,
                                                                  "not_detected")

    def test_given_hold_reject_when_denied_as_never_scannable_then_rejected_at_once(self):
        messages = Messages()
        messages.evolve(received("m0000001"), 0)
        denied = admit(Ledger(), received("m0000001", 200 * MIB + 1), holding(), DEFAULT_RULE,
                       T0, REF)
        (decided,) = decide(messages, denied, lambda _p: Policy(RuleKata(), "hold", "reject"),
                            T0, REF)
        assert (decided.action, decided.reason, decided.held) == ("reject", "too_large", True)


def test_a_message_held_then_admitted_in_the_same_instant_is_timed_out_once() -> None:
    # Given a message held outside the full quarantine and admitted from the waiting list at
    # the same instant (the two deadlines equal): When its deadline passes, Then one timeout
    # and one decision (found by tests/unit/test_decider_properties.py)
    from tests.unit.test_decider_properties import DeciderMachine

    machine = DeciderMachine()
    for _ in range(4):
        machine.ingest_accepts_a_message(1)
    machine.an_administrator_acts(0, False)
    machine.on_unavailable_or_the_connection_changes(True, False)
    machine.the_consumers_read_on(11)
    machine.time_passes(60)
    decided = [e.message_id for e in machine.log if e.type == "action.decided"]
    assert sorted(decided) == [f"MSG{i:08d}" for i in range(4)]
