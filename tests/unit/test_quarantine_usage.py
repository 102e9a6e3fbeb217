"""The quarantine's usage record (ingest's only view of the ledger) and the waiting list's
bound (on_unavailable = hold), pure."""

from __future__ import annotations

from uuid import UUID

from katagate.decider.decide import Messages, decide
from katagate.decider.ledger import MAX_WAITING, Ledger, admit, usage_figures, usage_record
from katagate.decider.policy import Policy
from katagate.schemas import (
    DEFAULT_RULE,
    QuarantineDenied,
    QuarantineHeld,
    QuarantineUsageRecorded,
    RuleKata,
    decode_event,
    encode_event,
)
from tests.unit.test_decider_core import REF, T0, received
from tests.unit.test_on_unavailable import holding


def full_with_waiting(count: int) -> Ledger:
    """A quarantine of one place, taken, and `count` held messages waiting."""
    state = holding(quarantine_max_messages=1)
    ledger = Ledger()
    ledger.evolve(admit(ledger, received("m0000000"), state, DEFAULT_RULE, T0, REF))
    for i in range(count):
        held = admit(ledger, received(f"w{i:09d}"), state, DEFAULT_RULE, T0, REF)
        assert isinstance(held, QuarantineHeld)
        ledger.evolve(held)
    return ledger


def test_given_a_full_waiting_list_then_a_newcomer_is_denied_at_once_and_says_why():
    # Given the quarantine full and MAX_WAITING messages waiting
    ledger = full_with_waiting(MAX_WAITING)
    # When one more message under hold comes
    event = admit(ledger, received("m0000009"), holding(quarantine_max_messages=1),
                  DEFAULT_RULE, T0, REF)
    # Then it does not wait: denied, with the limit it met and the full list recorded
    assert isinstance(event, QuarantineDenied)
    assert (event.reason, event.waiting_list_full) == ("count_limit", True)
    ledger.evolve(event)
    assert len(ledger.waiting) == MAX_WAITING


def test_given_one_place_left_on_the_waiting_list_then_the_newcomer_still_waits():
    ledger = full_with_waiting(MAX_WAITING - 1)
    event = admit(ledger, received("m0000009"), holding(quarantine_max_messages=1),
                  DEFAULT_RULE, T0, REF)
    assert isinstance(event, QuarantineHeld)
    assert event.waiting == MAX_WAITING


def test_given_hold_reject_when_the_waiting_list_is_full_then_hold_outcome_decides_at_once():
    denied = admit(full_with_waiting(MAX_WAITING), received("m0000009"),
                   holding(quarantine_max_messages=1), DEFAULT_RULE, T0, REF)
    messages = Messages()
    messages.evolve(received("m0000009"), 0)
    (decided,) = decide(messages, denied, lambda _p: Policy(RuleKata(), "hold", "reject"),
                        T0, REF)
    assert (decided.action, decided.reason, decided.held) == ("reject", "count_limit", True)


def test_the_usage_record_says_the_ledgers_usage_limits_and_waiting_count():
    # Given a full quarantine of one place with two waiting
    ledger = full_with_waiting(2)
    # When the admission records the usage
    record = usage_record(ledger, holding(quarantine_max_messages=1), UUID(int=7), T0, REF)
    # Then ingest reads the usage, the limits and the waiting count, under the one key
    assert (record.bytes_in_use, record.messages_in_use, record.limit_messages,
            record.waiting) == (1000, 1, 1, 2)
    assert record.partition_key() == "usage"
    assert decode_event(encode_event(record)) == record
    assert isinstance(decode_event(encode_event(record)), QuarantineUsageRecorded)
    # and an unchanged ledger gives equal figures (the admission does not write it again)
    again = usage_record(ledger, holding(quarantine_max_messages=1), UUID(int=8), T0, REF)
    assert usage_figures(again) == usage_figures(record)
