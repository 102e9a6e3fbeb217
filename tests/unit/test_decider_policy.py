"""Every row of the decision table in docs/ARCHITECTURE.md."""

from __future__ import annotations

import pytest

from katagate.decider.policy import SKIPPED_REASONS, Decision, decide
from katagate.schemas import ActionDecided, RuleKata


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (RuleKata(action="delete"), Decision("delete", None, True, False, "detected")),
        (RuleKata(action="reject"), Decision("reject", None, True, False, "detected")),
        (RuleKata(action="skip"), Decision("deliver", "[KATA detect]", True, False, "detected")),
        (RuleKata(action="skip", tag=None, backup=False),
         Decision("deliver", None, False, False, "detected")),
        (RuleKata(action="delete", backup=False), Decision("delete", None, False, False,
                                                            "detected")),
    ],
)
def test_given_a_detect_then_the_rules_action(rule, expected):
    assert decide("detect", rule) == expected


def test_given_not_detected_then_delivered_unchanged():
    assert decide("not_detected", RuleKata(action="delete")) == Decision(
        "deliver", None, False, False, "not_detected")


@pytest.mark.parametrize("reason", sorted(SKIPPED_REASONS))
def test_given_a_skipped_reason_then_delivered_unchanged_with_the_reason(reason):
    decision = decide(reason, RuleKata(action="reject"))
    assert decision == Decision("deliver", None, False, True, reason)


def test_every_reason_the_table_gives_is_one_the_event_accepts():
    reasons = ActionDecided.model_fields["reason"].annotation.__args__  # type: ignore[union-attr]
    assert {"detected", "not_detected", "deleted_by_admin", *SKIPPED_REASONS} == set(reasons)


def test_a_message_deleted_by_an_administrator_is_discarded_whatever_the_rule():
    for action in ("delete", "reject", "skip"):
        assert decide("deleted_by_admin", RuleKata(action=action, backup=True)) == Decision(
            "delete", None, False, False, "deleted_by_admin")


def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError, match="teleported"):
        decide("teleported", RuleKata())
