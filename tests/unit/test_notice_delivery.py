"""A notice through apply's pure parts: a parcel of its own, sent to its addressees, deferred
and retried on the mail's schedule, and failed for good without a DSN (it has the null sender
<>, and nothing answers a notice)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from katagate.decider import outcomes
from katagate.decider.outcomes import Effects
from katagate.decider.parcels import Parcels
from katagate.decider.smtp_out import DeliveryOutcome, RecipientResult
from katagate.schemas import NotificationComposed, ProducerRef

T0 = datetime(2026, 12, 3, 10, tzinfo=UTC)
REF = ProducerRef(stage="decider", instance="d")
FX = Effects(producer=REF, next_hop="127.0.0.1:25", retry_first=timedelta(seconds=30),
             retry_period=timedelta(hours=5))
NOTICE_ID = "ab" * 16


def composed() -> NotificationComposed:
    return NotificationComposed(
        event_id=uuid.uuid4(), occurred_at=T0, producer=REF, message_id=NOTICE_ID,
        kind="detect", audience="administrators", about="MSG00000001",
        to=["soc@example.net", "it@example.net"], data="Subject: x\r\n\r\nx\r\n")


def test_given_a_notice_then_apply_carries_it_as_a_parcel_of_its_own():
    parcels, notice = Parcels(), composed()
    parcels.evolve(notice, 2)
    parcel = parcels.live[NOTICE_ID]
    assert (parcel.notice, parcel.recipients, parcel.raw, parcel.decision, parcel.partition) == (
        notice, ("soc@example.net", "it@example.net"), None, None, 2)


def test_given_a_deferred_notice_then_it_is_retried_then_ends_when_delivered():
    parcels = Parcels()
    parcels.evolve(composed(), 0)
    parcel = parcels.live[NOTICE_ID]
    (deferred,) = outcomes.after_delivery(
        FX, parcel, DeliveryOutcome("deferred", "451 4.3.0 try later", 451), False, T0).events
    assert (deferred.type, deferred.message_id) == ("delivery.deferred", NOTICE_ID)
    parcels.evolve(deferred, 0)
    assert parcels.due(T0 + timedelta(seconds=29)) == []
    (due,) = parcels.due(T0 + timedelta(seconds=30))
    accepted = tuple(RecipientResult(r, 250, "250 ok") for r in due.recipients)
    (delivered,) = outcomes.after_delivery(
        FX, due, DeliveryOutcome("delivered", "250 ok", 250, accepted), False,
        T0 + timedelta(seconds=30)).events
    assert (delivered.type, delivered.recipients, delivered.attempts) == (
        "delivery.delivered", ["soc@example.net", "it@example.net"], 2)
    parcels.evolve(delivered, 0)
    assert not parcels.holds(NOTICE_ID)


def test_given_a_notice_refused_for_good_then_no_dsn_is_owed():
    parcels = Parcels()
    parcels.evolve(composed(), 0)
    recorded = outcomes.after_delivery(FX, parcels.live[NOTICE_ID],
                                       DeliveryOutcome("failed", "550 5.1.1 no such user", 550),
                                       False, T0)
    assert [e.type for e in recorded.events] == ["delivery.failed"]
    assert recorded.bounce is None


def test_given_a_deferred_notice_then_apply_restores_it_from_its_restore_point():
    # Given a notice deferred, then a message received and delivered after it
    from katagate.eventlog.records import Consumed
    from katagate.schemas import encode_event
    from tests.unit.test_decider_core import received
    from tests.unit.test_decider_parcels import decided
    from tests.unit.test_restore_points import delivered, new_apply

    notice = composed()
    (deferred,) = outcomes.after_delivery(
        FX, _parcel(notice),
        DeliveryOutcome("deferred", "451 4.3.0 later", 451), False, T0).events
    m = "MSG00000002"
    log = [notice, received(m), decided(m), delivered(m), deferred]
    shell = new_apply()
    for offset, event in enumerate(log):
        shell.restore(Consumed("mail", 0, offset, None, encode_event(event)))
    # Then the restore point lies at the notice, which still waits for its retry
    assert shell.restore_point("mail", 0) == 0
    assert [p.message_id for p in shell.parcels.due(T0 + timedelta(hours=1))] == [NOTICE_ID]


def _parcel(notice: NotificationComposed):
    parcels = Parcels()
    parcels.evolve(notice, 0)
    return parcels.live[NOTICE_ID]


def test_given_a_notice_read_from_both_topics_then_its_timeline_holds_it_once():
    # Given the notice as the admission writes it: to katagate.quarantine and its mirror
    from functools import reduce

    from katagate.projector.views import Projections, evolve

    notice = composed()
    views = reduce(evolve, [notice, notice], Projections())
    # Then the projector's timeline of the notice holds it once
    found = views.message(NOTICE_ID)
    assert found is not None
    assert [e["type"] for e in found["events"]] == ["notification.composed"]
    assert found["event_count"] == 1


def test_given_more_retries_due_than_the_limit_then_the_earliest_come_and_the_rest_stay_due():
    parcels = Parcels()
    for index in range(5):
        notice = composed().model_copy(update={"message_id": f"{index:032x}"})
        parcels.evolve(notice, 0)
        (deferred,) = outcomes.after_delivery(
            FX, parcels.live[notice.message_id], DeliveryOutcome("deferred", "451 later", 451),
            False, T0 + timedelta(seconds=index)).events
        parcels.evolve(deferred, 0)
    later = T0 + timedelta(hours=1)
    assert [p.message_id for p in parcels.due(later, limit=3)] == [
        f"{index:032x}" for index in range(3)]
    assert [p.message_id for p in parcels.due(later)] == [f"{index:032x}" for index in (3, 4)]
    assert parcels.due(later) == []
