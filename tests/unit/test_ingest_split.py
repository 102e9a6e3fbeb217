"""Per-recipient rules: a message whose recipients fall under rules with different KATA
sections becomes one copy per section (ingest/split.py), each its own MessageReceived sharing
the raw chunks (ingest/received.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from katagate.ingest.received import Accepted, Copy, received_events
from katagate.ingest.split import copy_ids, queued_as, recipient_groups
from katagate.schemas import (
    ControlState,
    ProducerRef,
    RawLocation,
    Rule,
    RuleCreated,
    RuleKata,
    evolve_control,
)

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
REF = ProducerRef(stage="ingest", instance="test")
FIRST = "01JABCDEFGHJKMNPQRSTVWXYZ0"


def with_rules(*rules: Rule) -> ControlState:
    state = ControlState()
    for version, rule in enumerate(rules, start=1):
        state = evolve_control(state, RuleCreated(
            event_id=uuid.uuid4(), occurred_at=NOW, producer=ProducerRef(stage="admin",
                                                                         instance="t"),
            version=version, actor="test", rule=rule))
    return state


def rule(rule_id: str, position: int, recipients: list[str], **kata: object) -> Rule:
    return Rule(rule_id=rule_id, name=rule_id, position=position, senders=["*"],
                recipients=recipients, kata=RuleKata(**kata))  # type: ignore[arg-type]


def test_given_recipients_under_rules_with_different_kata_sections_then_one_group_per_section():
    state = with_rules(rule("delete", 1, ["*@del.example"], action="delete"),
                       rule("skip", 2, ["*@skip.example"], action="skip"))
    groups = recipient_groups(state, "a@x.example", ["b@del.example", "c@skip.example",
                                                    "d@del.example"])
    assert [(g.rule_id, g.recipients) for g in groups] == [
        ("delete", ("b@del.example", "d@del.example")), ("skip", ("c@skip.example",))]


def test_given_every_recipient_under_one_section_then_one_group_under_the_whole_message_rule():
    # Two rules, equal KATA sections: nothing to split; the rule is today's: the first by
    # position matching the sender and any recipient.
    state = with_rules(rule("one", 1, ["*@one.example"]), rule("two", 2, ["*@two.example"]))
    groups = recipient_groups(state, "a@x.example", ["b@two.example", "c@one.example"])
    assert [(g.rule_id, g.recipients) for g in groups] == [
        ("one", ("b@two.example", "c@one.example"))]


def test_given_a_recipient_no_rule_matches_then_its_copy_falls_under_the_default_rule():
    state = with_rules(rule("skip", 1, ["*@skip.example"], action="skip"))
    groups = recipient_groups(state, "a@x.example", ["b@other.example", "c@skip.example"])
    assert [(g.rule_id, g.recipients) for g in groups] == [
        (None, ("b@other.example",)), ("skip", ("c@skip.example",))]


def test_a_copy_rule_is_the_first_by_position_among_its_recipients_rules():
    # b and d: equal sections under rules 3 and 1; c under rule 2 with another section.
    state = with_rules(rule("r1", 1, ["d@x.example"]), rule("r2", 2, ["c@x.example"],
                                                           enabled=False),
                       rule("r3", 3, ["b@x.example"]))
    groups = recipient_groups(state, "a@x.example", ["b@x.example", "c@x.example",
                                                    "d@x.example"])
    assert [(g.rule_id, g.recipients) for g in groups] == [
        ("r1", ("b@x.example", "d@x.example")), ("r2", ("c@x.example",))]


def test_copy_ids_are_the_first_id_then_suffixed_and_the_reply_names_them_all():
    ids = copy_ids(FIRST, 3)
    assert ids == [FIRST, f"{FIRST}S1", f"{FIRST}S2"]
    assert queued_as([FIRST]) == FIRST
    assert queued_as(ids) == f"{FIRST} {FIRST}S1 {FIRST}S2 (3 copies, one per rule)"
    many = queued_as(copy_ids(FIRST, 40))
    assert many.startswith(f"{FIRST} {FIRST}S1 ")
    assert f"... {FIRST}S39 (40 copies" in many
    assert len(f"250 2.0.0 Ok: queued as {many}") < 512


def test_given_copies_then_one_received_event_each_sharing_the_raw_chunks_of_the_first():
    first, second = copy_ids(FIRST, 2)
    accepted = Accepted(
        message_id=first, event_id=uuid.uuid4(), occurred_at=NOW, envelope_from="a@x.example",
        envelope_to=("b@del.example", "c@skip.example"), client_ip="127.0.0.1", helo="x",
        tls=False, subject="s", rule_id="delete", settings_version=2, data=b"raw",
        content_sha256="1" * 64,
        copies=(Copy(first, uuid.uuid4(), "delete", ("b@del.example",)),
                Copy(second, uuid.uuid4(), "skip", ("c@skip.example",))),
    )
    location = RawLocation(topic="p.mail.raw", partition=2, offsets=[5], chunk_bytes=1 << 20)
    events = received_events(accepted, REF, "0" * 64, 3, location)
    assert [(e.message_id, e.rule_id, e.envelope_to) for e in events] == [
        (first, "delete", ["b@del.example"]), (second, "skip", ["c@skip.example"])]
    assert [e.event_id for e in events] == [c.event_id for c in accepted.copies]
    assert all(e.copies == [first, second] for e in events)
    assert all(e.content_sha256 == "1" * 64 and e.sha256 == "0" * 64 for e in events)
    assert events[0].raw == location
    assert events[1].raw == location.model_copy(update={"key": first})


def test_given_no_copies_then_one_event_not_marked_as_split():
    accepted = Accepted(
        message_id=FIRST, event_id=uuid.uuid4(), occurred_at=NOW, envelope_from="",
        envelope_to=("b@x.example",), client_ip="127.0.0.1", helo="x", tls=False, subject=None,
        rule_id=None, settings_version=0, data=b"raw", content_sha256="1" * 64)
    location = RawLocation(topic="p.mail.raw", partition=0, offsets=[1], chunk_bytes=1 << 20)
    [event] = received_events(accepted, REF, "0" * 64, 3, location)
    assert event.copies == []
    assert event.raw.key is None
    assert event.content_sha256 == "1" * 64
