"""The decision table of docs/ARCHITECTURE.md, as data: what happens to a message for each outcome
of its KATA scan. The stage that decides is not the stage that acts (apply carries it out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from katagate.schemas import UNAVAILABLE_REASONS, ControlState, RuleKata, on_unavailable_of
from katagate.schemas.control import HoldOutcome, OnUnavailable

Action = Literal["deliver", "delete", "reject"]


@dataclass(frozen=True)
class Policy:
    """What decides a message: its rule's KATA section, and what to do when KATA cannot answer
    (the rule's `on_unavailable`, else the global one; the global `hold_outcome`)."""

    kata: RuleKata
    on_unavailable: OnUnavailable = "skip"
    hold_outcome: HoldOutcome = "skip"


def policy_of(control: ControlState, rule_id: str | None) -> Policy:
    rule = control.rule(rule_id)
    return Policy(rule.kata, on_unavailable_of(control, rule), control.settings.hold_outcome)


@dataclass(frozen=True)
class Decision:
    action: Action
    tag: str | None
    backup: bool
    skipped: bool
    reason: str  # schemas.ActionReason
    held: bool = False  # decided by hold_outcome: the message was kept, KATA did not answer


# "If KATA detected an event": the rule's choice → what we do.
ON_DETECT: dict[str, Action] = {"delete": "delete", "reject": "reject", "skip": "deliver"}

# Outcomes that end in *Skipped*: the message goes on unchanged, the reason is recorded.
SKIPPED_REASONS = frozenset({
    "timeout", "error", "size_limit", "count_limit", "too_large", "kata_disabled",
    "rule_kata_disabled", "not_connected", "forced_release",
})


def decide(outcome: str, rule: RuleKata, on_unavailable: OnUnavailable = "skip",
           hold_outcome: HoldOutcome = "skip") -> Decision:
    """`outcome` is a verdict state (detect, not_detected, timeout, error), a Skipped reason,
    or deleted_by_admin. Under `hold` (and `tempfail`, for a message accepted before the
    gateway knew KATA could not answer) an outcome KATA could not answer for ends with
    `hold_outcome`: Skipped, or rejected (an NDR per the NDR switch)."""
    if outcome in UNAVAILABLE_REASONS and on_unavailable != "skip":
        if hold_outcome == "reject":
            return Decision("reject", None, backup=False, skipped=False, reason=outcome,
                            held=True)
        return Decision("deliver", None, backup=False, skipped=True, reason=outcome, held=True)
    if outcome == "detect":
        action = ON_DETECT[rule.action]
        # The tag marks delivered messages only; a deleted or rejected one is never seen.
        tag = rule.tag if action == "deliver" else None
        return Decision(action, tag, rule.backup, skipped=False, reason="detected")
    if outcome == "deleted_by_admin":
        # Deleted from the KATA Quarantine by an administrator: discarded, nothing kept.
        return Decision("delete", None, backup=False, skipped=False, reason=outcome)
    if outcome == "not_detected":
        return Decision("deliver", None, backup=False, skipped=False, reason="not_detected")
    if outcome in SKIPPED_REASONS:
        return Decision("deliver", None, backup=False, skipped=True, reason=outcome)
    raise ValueError(f"no decision for outcome {outcome!r}")
