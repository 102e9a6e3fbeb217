"""The KATA Quarantine's administrator commands and waiting list, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from katagate.admin.errors import InvalidCommand
from katagate.admin.quarantine import forced_delete, forced_release, refuse_unless_waiting, waiting
from tests.unit.test_projector_flows import message_flow

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def ledger(*messages: int) -> list:
    return [e for i in messages for t, e in message_flow(i) if t == "quarantine"]


def test_the_waiting_list_holds_admitted_messages_not_yet_released_oldest_first() -> None:
    # Given message 1 released, message 4 still waiting (its flow cut after admission), and
    # message 3 denied for the count limit
    cut = [e for t, e in message_flow(4, "timeout")[:3] if t == "quarantine"]
    held = waiting([*ledger(1, 3), *cut])
    # Then only the admitted, unreleased one waits, with its size, rule and deadline
    assert [w.message_id for w in held] == ["MSG00000004"]
    assert held[0].size == 1004
    assert held[0].deadline_at > held[0].admitted_at


@pytest.mark.parametrize("make", [forced_release, forced_delete])
def test_a_bad_message_id_or_comment_is_refused_naming_the_field(make) -> None:
    with pytest.raises(InvalidCommand, match=r"^message_id: expected 8-64 letters"):
        make("not an id", "ops", "", NOW)
    with pytest.raises(InvalidCommand, match=r"^comment: at most 1000 characters"):
        make("MSG00000001", "ops", "x" * 1001, NOW)


def test_a_deletion_records_who_and_why() -> None:
    event = forced_delete("MSG00000001", "ops", "phishing", NOW)
    assert (event.type, event.actor, event.comment, event.producer.stage) == (
        "quarantine.forced_delete", "ops", "phishing", "admin")


def test_only_a_waiting_message_can_be_sent_on_or_deleted() -> None:
    held = {w.message_id: w for w in waiting(ledger(1))}
    with pytest.raises(InvalidCommand, match="is not waiting in the KATA Quarantine"):
        refuse_unless_waiting(held, "MSG00000001")


def test_a_message_held_outside_the_full_quarantine_can_be_sent_on_until_its_hold_ends() -> None:
    # Given a message waiting outside the full quarantine (on_unavailable = hold)
    from tests.unit.fixtures.events import sample_events

    held_event, ended = [e for e in sample_events()
                         if e.type in ("quarantine.held", "quarantine.hold_ended")]
    held = {w.message_id: w for w in waiting([held_event])}
    # Then an administrator may send it on or delete it
    refuse_unless_waiting(held, held_event.message_id)
    assert held[held_event.message_id].deadline_at == held_event.deadline_at
    # When its hold ended, Then no more
    held = {w.message_id: w for w in waiting([held_event, ended])}
    with pytest.raises(InvalidCommand, match="is not waiting in the KATA Quarantine"):
        refuse_unless_waiting(held, held_event.message_id)
