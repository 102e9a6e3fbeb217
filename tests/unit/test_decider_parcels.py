"""What apply still has to carry out: retries come due once, however often their deferral was
folded."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from katagate.decider.parcels import Parcels
from katagate.schemas import ActionDecided, DeliveryDeferred, MessageDelivered
from tests.unit.test_decider_core import REF, T0, received


def decided(m: str) -> ActionDecided:
    return ActionDecided(event_id=event_id(1), occurred_at=T0, producer=REF, message_id=m,
                         action="deliver", tag=None, backup=False, skipped=False,
                         reason="not_detected")


def deferred(m: str, attempt: int, retry_in_s: int) -> DeliveryDeferred:
    return DeliveryDeferred(event_id=event_id(10 + attempt), occurred_at=T0, producer=REF,
                            message_id=m, next_hop="127.0.0.1:25", attempt=attempt,
                            reply="451 4.3.0 later",
                            retry_at=T0 + timedelta(seconds=retry_in_s))


def event_id(n: int) -> UUID:
    return UUID(int=n)


def parcels_with(*events) -> Parcels:
    parcels = Parcels()
    for event in events:
        parcels.evolve(event, 0)
    return parcels


def test_a_deferral_folded_twice_comes_due_once():
    m = "m0000001"
    twice = deferred(m, 1, 30)
    parcels = parcels_with(received(m), decided(m), twice, twice)
    assert [p.message_id for p in parcels.due(T0 + timedelta(seconds=31))] == [m]
    assert parcels.due(T0 + timedelta(seconds=60)) == []


def test_nothing_is_due_before_its_time_and_a_later_deferral_replaces_the_earlier():
    m = "m0000001"
    parcels = parcels_with(received(m), decided(m), deferred(m, 1, 30))
    assert parcels.due(T0 + timedelta(seconds=29)) == []
    parcels.evolve(deferred(m, 2, 90), 0)
    assert parcels.due(T0 + timedelta(seconds=31)) == []
    (due,) = parcels.due(T0 + timedelta(seconds=90))
    assert due.attempts == 2


def test_a_delivered_message_is_never_due():
    m = "m0000001"
    parcels = parcels_with(received(m), decided(m), deferred(m, 1, 30))
    parcels.evolve(MessageDelivered(event_id=event_id(99), occurred_at=T0, producer=REF,
                                    message_id=m, next_hop="127.0.0.1:25",
                                    recipients=["b@example.org"], reply="250 ok", tagged=False,
                                    attempts=2), 0)
    assert parcels.due(T0 + timedelta(seconds=31)) == []
