"""KATA Quarantine usage against both limits, folded from the ledger.

Every ledger event is read twice — from `katagate.quarantine` and mirrored on the message's
`katagate.mail` partition — and folded once: the first copy read counts, the second is removed
before the folds (`copies.py`). Whichever topic a reader reaches first, an admission copy
precedes the release copy of the same topic, so a release never comes before its admission.
Only held messages are kept, so the view is bounded by the quarantine's own limits. Limits
come from the settings events (`katagate.control`, one partition, in order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from katagate.projector.canonical import timestamp
from katagate.schemas import (
    EVENT_TYPES,
    Event,
    KataSettings,
    KataSettingsChanged,
    KataSettingsReset,
    LedgerEvent,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineReleased,
)

# What this view folds — the ledger's events and the settings that carry the limits — by type
# string, checked before the match: most events are none of them.
FOLDED = frozenset(name for name, cls in EVENT_TYPES.items()
                   if issubclass(cls, (LedgerEvent, KataSettingsChanged, KataSettingsReset)))
DEFAULT_RULE = "default"  # mail that matched no rule is handled by the default rule


class Held(NamedTuple):
    """A message waiting in the KATA Quarantine for its verdict."""

    size: int
    rule: str
    admitted_at: str  # canonical instants
    deadline_at: str


@dataclass
class QuarantineView:
    limit_bytes: int = KataSettings().quarantine_max_bytes
    limit_messages: int = KataSettings().quarantine_max_messages
    held: dict[str, Held] = field(default_factory=dict)
    released_total: int = 0
    denied_total: int = 0
    rules: set[str] = field(default_factory=set)  # rules that ever held a message (few)

    def to_state(self) -> dict[str, Any]:
        return {
            "limit_bytes": self.limit_bytes,
            "limit_messages": self.limit_messages,
            "held": {m: list(held) for m, held in self.held.items()},
            "released_total": self.released_total,
            "denied_total": self.denied_total,
            "rules": sorted(self.rules),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QuarantineView:
        return cls(
            limit_bytes=state["limit_bytes"], limit_messages=state["limit_messages"],
            held={m: Held(int(size), str(rule), str(at), str(deadline))
                  for m, (size, rule, at, deadline) in state["held"].items()},
            released_total=int(state["released_total"]),
            denied_total=int(state["denied_total"]),
            rules=set(state["rules"]),
        )


def evolve(view: QuarantineView, event: Event) -> QuarantineView:
    """Updates the view in place and returns it (a fold over a mutable accumulator)."""
    if event.type not in FOLDED:
        return view
    match event:
        case KataSettingsChanged() | KataSettingsReset():
            view.limit_bytes = event.settings.quarantine_max_bytes
            view.limit_messages = event.settings.quarantine_max_messages
        case QuarantineAdmitted():
            view.rules.add(event.rule_id or DEFAULT_RULE)
            view.held[event.message_id] = Held(event.size, event.rule_id or DEFAULT_RULE,
                                               timestamp(event.occurred_at),
                                               timestamp(event.deadline_at))
        case QuarantineReleased():
            view.released_total += 1
            view.held.pop(event.message_id, None)
        case QuarantineDenied():
            view.denied_total += 1
    return view


def render(view: QuarantineView) -> dict[str, Any]:
    # Every rule that held a message stays listed, at zero when it holds none now.
    per_rule: dict[str, dict[str, int]] = {
        rule: {"bytes_in_use": 0, "messages_in_use": 0} for rule in view.rules}
    for size, rule, _at, _deadline in view.held.values():
        usage = per_rule.setdefault(rule, {"bytes_in_use": 0, "messages_in_use": 0})
        usage["bytes_in_use"] += size
        usage["messages_in_use"] += 1
    bytes_in_use = sum(held.size for held in view.held.values())
    messages_in_use = len(view.held)
    return {
        "bytes_in_use": bytes_in_use,
        "messages_in_use": messages_in_use,
        "limit_bytes": view.limit_bytes,
        "limit_messages": view.limit_messages,
        "bytes_free": max(0, view.limit_bytes - bytes_in_use),
        "messages_free": max(0, view.limit_messages - messages_in_use),
        "per_rule": per_rule,
        "released_total": view.released_total,
        "denied_total": view.denied_total,
    }
