"""The decision table of docs/ARCHITECTURE.md, as data: what happens to a message for each outcome
of its KATA scan. The stage that decides is not the stage that acts (apply carries it out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas import RuleKata

Action = Literal["deliver", "delete", "reject"]


@dataclass(frozen=True)
class Decision:
    action: Action
    tag: str | None
    backup: bool
    skipped: bool
    reason: str  # schemas.ActionReason


# "If KATA detected an event": the rule's choice → what we do.
ON_DETECT: dict[str, Action] = {"delete": "delete", "reject": "reject", "skip": "deliver"}

# Outcomes that end in *Skipped*: the message goes on unchanged, the reason is recorded.
SKIPPED_REASONS = frozenset({
    "timeout", "error", "size_limit", "count_limit", "too_large", "kata_disabled",
    "rule_kata_disabled", "not_connected", "forced_release",
})


def decide(outcome: str, rule: RuleKata) -> Decision:
    """`outcome` is a verdict state (detect, not_detected, timeout, error), a Skipped reason,
    or deleted_by_admin."""
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
