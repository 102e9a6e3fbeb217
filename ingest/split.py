"""Per-recipient rules, pure: a message whose recipients fall under rules with different KATA
sections becomes one copy per section, each with its own id, recipients and rule.

A recipient's rule is the first enabled rule (by position) matching the envelope sender and
that recipient (schemas.match_rule over one recipient). Recipients whose rules have equal KATA
sections stay together: the copy would be handled the same way under either rule, so splitting
them would only cost a second decision and delivery. A copy's rule is then the one
`match_rule` gives for the copy's recipients, the first by position among theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

from katagate.ingest.received import rule_for
from katagate.schemas import ControlState, match_rule

# A copy's id is the first id with a suffix: still `[A-Za-z0-9]{8,64}` (the KATA scanId's
# alphabet), and a grep for the first id finds every copy.
COPY_SUFFIX = "S"


@dataclass(frozen=True)
class Group:
    rule_id: str | None  # None: the default rule
    recipients: tuple[str, ...]


def recipient_groups(state: ControlState, sender: str, recipients: list[str]) -> list[Group]:
    """The recipients grouped by their rule's KATA section, in the order of their first
    recipient. One group (the message is not split) unless the sections differ; then the
    first group's copy keeps the id the client is told first."""
    sections: dict[str, list[str]] = {}
    for recipient in recipients:
        rule = match_rule(state, sender, [recipient])
        sections.setdefault(rule.kata.model_dump_json(), []).append(recipient)
    if len(sections) <= 1:
        return [Group(rule_for(state, sender, recipients), tuple(recipients))]
    return [Group(rule_for(state, sender, group), tuple(group)) for group in sections.values()]


def copy_ids(first: str, count: int) -> list[str]:
    """The ids of `count` copies: the first id, then the first id suffixed S1, S2, ..."""
    if count < 1:
        raise ValueError("a message has at least one copy")
    return [first, *(f"{first}{COPY_SUFFIX}{i}" for i in range(1, count))]


# A reply line stays well under RFC 5321's 512 octets: past this many, the ids are a range.
LISTED_IN_REPLY = 8


def queued_as(ids: list[str]) -> str:
    """What the `250` names: the id, or every copy's id (the first ones and the last when a
    message was split many ways)."""
    if len(ids) == 1:
        return ids[0]
    shown = ids if len(ids) <= LISTED_IN_REPLY else [*ids[:LISTED_IN_REPLY - 1], "...", ids[-1]]
    return f"{' '.join(shown)} ({len(ids)} copies, one per rule)"
