"""Which events an effect's outcome produces (decider/outcomes.py), without sockets or Kafka."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from uuid import UUID

import pytest

from katagate.decider import outcomes
from katagate.decider.outcomes import Bounce, Effects
from katagate.decider.parcels import Parcel
from katagate.decider.smtp_out import DeliveryOutcome, RecipientResult
from katagate.schemas import (
    ActionDecided,
    BackupStored,
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
    MessageDiscarded,
    NdrSent,
    NdrSuppressed,
    RawLocation,
)
from tests.unit.test_decider_core import REF, T0

M = "m0000001"
SENDER = "a@example.org"
B, C = "b@example.org", "c@example.org"
NOW = T0 + timedelta(minutes=5)
HOP = "127.0.0.1:2525"
# Not the module's 30 s default: the schedule must come from the settings.
FX = Effects(producer=REF, next_hop=HOP, retry_first=timedelta(seconds=45),
             retry_period=timedelta(hours=4))
RAW = RawLocation(topic="r", partition=0, offsets=[0], chunk_bytes=1)
DECISION_ID = UUID(int=42)
CORRELATION = UUID(int=7)


def decision(action: str = "deliver", reason: str = "not_detected") -> ActionDecided:
    return ActionDecided(event_id=DECISION_ID, occurred_at=T0, producer=REF, message_id=M,
                         action=action, tag=None, backup=False, skipped=False, reason=reason)


def parcel(action: str = "deliver", reason: str = "not_detected", attempts: int = 0,
           first_attempt_at=None, m: str = M) -> Parcel:
    return Parcel(m, 0, CORRELATION, SENDER, (B, C), RAW, "0" * 64, T0,
                  decision=decision(action, reason), attempts=attempts,
                  first_attempt_at=first_attempt_at)


def rcpt(recipient: str, code: int, reply: str) -> RecipientResult:
    return RecipientResult(recipient, code, reply)


def delivered(*results: RecipientResult,
              reply: str = "250 2.0.0 Ok: queued as 4F1") -> DeliveryOutcome:
    return DeliveryOutcome("delivered", reply, 250, results)


ALL_ACCEPTED = (rcpt(B, 250, "250 2.1.5 Ok"), rcpt(C, 250, "250 2.1.5 Ok"))
C_REFUSED = (rcpt(B, 250, "250 2.1.5 Ok"), rcpt(C, 550, "550 5.1.1 no such user"))
DEFERRED = DeliveryOutcome("deferred", "451 4.3.0 try again later", 451)
REFUSED = DeliveryOutcome("failed", "554 5.7.1 rejected by policy", 554)


class TestDelivery:
    def test_delivered_to_all_records_one_message_delivered_with_the_next_attempt(self):
        # Given a message already deferred twice
        # When the next hop takes it for every recipient
        recorded = outcomes.after_delivery(FX, parcel(attempts=2, first_attempt_at=T0),
                                           delivered(*ALL_ACCEPTED), True, NOW)
        # Then one MessageDelivered, counting this attempt, and no DSN owed
        (event,) = recorded.events
        assert isinstance(event, MessageDelivered)
        assert (event.recipients, event.reply, event.tagged, event.attempts, event.next_hop) == (
            [B, C], "250 2.0.0 Ok: queued as 4F1", True, 3, HOP)
        assert recorded.bounce is None

    def test_delivered_to_some_records_the_accepted_and_bounces_the_refused(self):
        recorded = outcomes.after_delivery(FX, parcel(), delivered(*C_REFUSED), False, NOW)
        (event,) = recorded.events
        assert isinstance(event, MessageDelivered)
        assert (event.recipients, event.attempts, event.tagged) == ([B], 1, False)
        assert recorded.bounce is not None
        assert recorded.bounce.recipients == [C]
        assert recorded.bounce.diagnostic.startswith("refused by the next hop: ")

    def test_the_bounce_for_a_refused_recipient_names_its_rcpt_reply(self):
        recorded = outcomes.after_delivery(FX, parcel(), delivered(*C_REFUSED), False, NOW)
        assert recorded.bounce is not None
        assert "550 5.1.1 no such user" in recorded.bounce.diagnostic
        assert outcomes.status_of(recorded.bounce.diagnostic) == "5.1.1"

    def test_deferred_on_the_first_attempt_retries_after_retry_first(self):
        recorded = outcomes.after_delivery(FX, parcel(), DEFERRED, False, NOW)
        (event,) = recorded.events
        assert isinstance(event, DeliveryDeferred)
        assert (event.attempt, event.retry_at, event.reply, event.next_hop) == (
            1, NOW + timedelta(seconds=45), "451 4.3.0 try again later", HOP)
        assert recorded.bounce is None

    @pytest.mark.parametrize(("attempts", "wait_s"), [(1, 90), (2, 180), (3, 360)])
    def test_each_later_deferral_waits_twice_as_long(self, attempts, wait_s):
        recorded = outcomes.after_delivery(FX, parcel(attempts=attempts, first_attempt_at=T0),
                                           DEFERRED, False, NOW)
        (event,) = recorded.events
        assert isinstance(event, DeliveryDeferred)
        assert (event.attempt, event.retry_at) == (attempts + 1, NOW + timedelta(seconds=wait_s))

    def test_the_last_retry_falls_on_the_end_of_the_retry_period(self):
        now = T0 + timedelta(hours=4) - timedelta(seconds=10)
        recorded = outcomes.after_delivery(FX, parcel(attempts=9, first_attempt_at=T0),
                                           DEFERRED, False, now)
        (event,) = recorded.events
        assert isinstance(event, DeliveryDeferred)
        assert event.retry_at == T0 + timedelta(hours=4)

    def test_deferred_once_the_retry_period_has_run_out_fails_and_bounces_everyone(self):
        # Given a message first tried four hours ago (the retry period)
        late = parcel(attempts=9, first_attempt_at=T0)
        # When it is deferred once more
        recorded = outcomes.after_delivery(FX, late, DEFERRED, False, T0 + timedelta(hours=4))
        # Then it fails for good, and its sender is owed a DSN for every recipient
        (event,) = recorded.events
        assert isinstance(event, DeliveryFailed)
        assert (event.attempts, event.recipients, event.reply) == (
            10, [B, C], "451 4.3.0 try again later")
        assert recorded.bounce == Bounce([B, C], "451 4.3.0 try again later")

    def test_a_permanent_failure_records_delivery_failed_and_bounces_every_recipient(self):
        recorded = outcomes.after_delivery(FX, parcel(attempts=1, first_attempt_at=T0),
                                           REFUSED, False, NOW)
        (event,) = recorded.events
        assert isinstance(event, DeliveryFailed)
        assert (event.attempts, event.recipients, event.reply, event.next_hop) == (
            2, [B, C], "554 5.7.1 rejected by policy", HOP)
        assert recorded.bounce == Bounce([B, C], "554 5.7.1 rejected by policy")


class TestRejectNdr:
    def test_the_ndr_accepted_records_ndr_sent_to_the_envelope_sender(self):
        recorded = outcomes.after_ndr(FX, parcel("reject", "detected"),
                                      delivered(rcpt(SENDER, 250, "250 Ok")), f"{M}-ndr", NOW)
        (event,) = recorded.events
        assert isinstance(event, NdrSent)
        assert (event.to, event.reason, event.dsn_message_id) == (SENDER, "kata_reject",
                                                                   f"{M}-ndr")
        assert recorded.bounce is None

    def test_the_ndr_deferred_records_delivery_deferred(self):
        recorded = outcomes.after_ndr(FX, parcel("reject", "detected"), DEFERRED, f"{M}-ndr",
                                      NOW)
        (event,) = recorded.events
        assert isinstance(event, DeliveryDeferred)
        assert (event.attempt, event.retry_at) == (1, NOW + timedelta(seconds=45))
        assert recorded.bounce is None

    def test_the_ndr_refused_fails_to_the_sender_without_a_bounce(self):
        recorded = outcomes.after_ndr(FX, parcel("reject", "detected"), REFUSED, f"{M}-ndr",
                                      NOW)
        (event,) = recorded.events
        assert isinstance(event, DeliveryFailed)
        assert (event.attempts, event.recipients, event.reply) == (
            1, [SENDER], "554 5.7.1 rejected by policy")
        assert recorded.bounce is None

    def test_the_ndr_deferred_past_the_retry_period_fails_without_a_bounce(self):
        late = parcel("reject", "detected", attempts=9, first_attempt_at=T0)
        recorded = outcomes.after_ndr(FX, late, DEFERRED, f"{M}-ndr", T0 + timedelta(hours=5))
        (event,) = recorded.events
        assert isinstance(event, DeliveryFailed)
        assert (event.attempts, event.recipients) == (10, [SENDER])
        assert recorded.bounce is None

    def test_a_suppressed_ndr_records_why(self):
        event = outcomes.ndr_suppressed(FX, parcel("reject", "detected"), "null_sender", NOW)
        assert isinstance(event, NdrSuppressed)
        assert event.reason == "null_sender"

    def test_a_dsn_for_a_failed_delivery_is_recorded_as_delivery_failed(self):
        event = outcomes.ndr_sent(FX, parcel(), "dsn", f"{M}-dsn", "delivery_failed", NOW)
        assert (event.to, event.reason, event.dsn_message_id) == (SENDER, "delivery_failed",
                                                                   f"{M}-dsn")


class TestOtherEffects:
    @pytest.mark.parametrize(("reason", "recorded"), [
        ("detected", "kata_delete"), ("deleted_by_admin", "deleted_by_admin")])
    def test_a_delete_decision_is_discarded_with_who_deleted_it(self, reason, recorded):
        event = outcomes.discarded(FX, parcel("delete", reason), NOW)
        assert isinstance(event, MessageDiscarded)
        assert event.reason == recorded

    @pytest.mark.parametrize(("attempts", "recorded"), [(0, 1), (3, 3)])
    def test_raw_unavailable_fails_with_at_least_one_attempt_and_the_reason(self, attempts,
                                                                           recorded):
        p = parcel(attempts=attempts, first_attempt_at=T0 if attempts else None)
        event = outcomes.raw_unavailable(FX, p, "chunk 3 is gone", NOW)
        assert isinstance(event, DeliveryFailed)
        assert (event.attempts, event.reply, event.recipients) == (
            recorded, "raw message unavailable: chunk 3 is gone", [B, C])

    def test_a_backup_records_where_the_copy_is_and_its_digest(self):
        where = RawLocation(topic="katagate.backup", partition=2, offsets=[5, 7], chunk_bytes=9)
        event = outcomes.backup_stored(FX, parcel(), where, "f" * 64, NOW)
        assert isinstance(event, BackupStored)
        assert (event.location, event.sha256) == (where, "f" * 64)


LONG = "451 4.3.0 " + "x" * 1500


class TestReplyLength:
    @pytest.mark.parametrize("make", [
        lambda: outcomes.after_delivery(FX, parcel(), DeliveryOutcome(
            "deferred", LONG, 451), False, NOW).events[0],
        lambda: outcomes.after_delivery(FX, parcel(), delivered(*ALL_ACCEPTED, reply=LONG),
                                        False, NOW).events[0],
        lambda: outcomes.failed(FX, parcel(), LONG, [B], 1, NOW).events[0],
        lambda: outcomes.raw_unavailable(FX, parcel(), "y" * 1500, NOW),
    ], ids=["deferred", "delivered", "failed", "raw_unavailable"])
    def test_replies_longer_than_1000_chars_are_cut_to_1000(self, make):
        event = make()
        assert len(event.reply) == 1000
        assert event.reply[:10] in ("451 4.3.0 ", "raw messag")

    def test_the_bounce_keeps_the_whole_reply(self):
        recorded = outcomes.failed(FX, parcel(), LONG, [B], 1, NOW)
        assert recorded.bounce == Bounce([B], LONG)


def every_effect(first: Parcel, now) -> dict[str, object]:
    return {
        "delivered": outcomes.after_delivery(FX, first, delivered(*ALL_ACCEPTED), False,
                                             now).events[0],
        "deferred-1": outcomes.after_delivery(FX, first, DEFERRED, False, now).events[0],
        "deferred-2": outcomes.after_delivery(FX, replace(first, attempts=1,
                                                          first_attempt_at=T0),
                                              DEFERRED, False, now).events[0],
        "failed": outcomes.after_delivery(FX, first, REFUSED, False, now).events[0],
        "discarded": outcomes.discarded(FX, first, now),
        "backup": outcomes.backup_stored(FX, first, RAW, "0" * 64, now),
        "ndr": outcomes.ndr_sent(FX, first, "ndr", f"{M}-ndr", "kata_reject", now),
        "dsn": outcomes.ndr_sent(FX, first, "dsn", f"{M}-dsn", "delivery_failed", now),
    }


class TestEventIds:
    def test_a_redone_effect_records_the_same_event_id(self):
        # Given the same decision carried out twice (a redelivery after a crash), a minute apart
        first = every_effect(parcel(), NOW)
        again = every_effect(parcel(), NOW + timedelta(minutes=1))
        # Then every effect has the same id both times
        assert {k: e.event_id for k, e in first.items()} == {
            k: e.event_id for k, e in again.items()}

    def test_different_effects_and_messages_have_different_event_ids(self):
        ids = [e.event_id for e in every_effect(parcel(), NOW).values()]
        other = [e.event_id for e in every_effect(parcel(m="m0000002"), NOW).values()]
        assert len(set(ids)) == len(ids) == 8
        assert set(ids).isdisjoint(other)

    def test_raw_unavailable_and_failed_share_the_one_failed_id(self):
        lost = outcomes.raw_unavailable(FX, parcel(), "gone", NOW)
        refused = outcomes.failed(FX, parcel(), "554 no", [], 1, NOW).events[0]
        assert lost.event_id == refused.event_id

    def test_every_effect_is_caused_by_the_decision_and_carries_the_flow(self):
        for name, event in every_effect(parcel(), NOW).items():
            assert (event.causation_id, event.correlation_id, event.message_id) == (
                DECISION_ID, CORRELATION, M), name
            assert (event.producer, event.occurred_at) == (REF, NOW), name


class TestStatusOf:
    @pytest.mark.parametrize(("reply", "status"), [
        ("550 5.1.1 no such user", "5.1.1"),
        ("452 4.2.2 mailbox full", "5.2.2"),
        ("554 rejected", "5.0.0"),
        ("refused by the next hop: 250 2.0.0 Ok", "5.0.0"),
        ("connection refused by 127.0.0.1:25", "5.0.0"),
    ])
    def test_the_enhanced_code_as_a_permanent_one_else_5_0_0(self, reply, status):
        assert outcomes.status_of(reply) == status


class TestNextRetry:
    @pytest.mark.parametrize("attempt", [0, -1])
    def test_attempts_count_from_one(self, attempt):
        with pytest.raises(ValueError, match="from 1"):
            outcomes.next_retry(attempt, T0, T0, timedelta(hours=4))

    def test_waits_double_up_to_one_hour(self):
        waits = [outcomes.next_retry(a, T0, T0, timedelta(days=5)) - T0 for a in (1, 2, 8, 30)]
        assert waits == [timedelta(seconds=30), timedelta(seconds=60), timedelta(hours=1),
                         timedelta(hours=1)]

    def test_gives_up_when_the_deadline_is_reached(self):
        deadline = T0 + timedelta(hours=4)
        assert outcomes.next_retry(3, T0, deadline, timedelta(hours=4)) is None
        assert outcomes.next_retry(3, T0, deadline - timedelta(seconds=1),
                                   timedelta(hours=4)) == deadline
