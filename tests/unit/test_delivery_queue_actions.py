"""The delivery queue's administrator actions, the pure parts: which messages wait in the queue,
and what retry, bounce (return to sender) and delete record, caused by the request."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from katagate.decider import outcomes
from katagate.decider.parcels import RESENDS_REMEMBERED, Parcels
from katagate.schemas import (
    BackupResent,
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
    MessageDiscarded,
)
from tests.unit.test_decider_core import REF, T0
from tests.unit.test_decider_outcomes import (
    CORRELATION,
    DEFERRED,
    FX,
    HOP,
    NOW,
    SENDER,
    B,
    C,
    M,
    parcel,
)

REQUEST = UUID(int=77)


def deferred(attempt: int = 1) -> DeliveryDeferred:
    return DeliveryDeferred(
        event_id=UUID(int=100 + attempt), occurred_at=T0, producer=REF, message_id=M,
        next_hop=HOP, attempt=attempt, reply="451 4.3.0 later",
        retry_at=T0 + timedelta(minutes=attempt))


def parcels_with(*events) -> Parcels:
    state = Parcels()
    state.live[M] = parcel()
    for event in events:
        state.evolve(event, 0)
    return state


def test_only_a_deferred_message_waits_in_the_queue():
    # Given a decided message never attempted: not waiting, and the reason says so
    assert "not deferred" in str(parcels_with().waiting(M))
    # Given one unknown (or delivered already): not waiting either
    assert "terminal" in str(parcels_with().waiting("m9999999"))
    # Given a deferred one: it waits, with its attempts
    waiting = parcels_with(deferred(2)).waiting(M)
    assert not isinstance(waiting, str)
    assert waiting.attempts == 2
    # And once it is delivered it no longer waits
    done = MessageDelivered(event_id=UUID(int=9), occurred_at=T0, producer=REF, message_id=M,
                            next_hop=HOP, recipients=[B], reply="250 ok", tagged=False,
                            attempts=3)
    assert isinstance(parcels_with(deferred(2), done).waiting(M), str)


def test_a_retry_is_the_usual_attempt_counted_and_caused_by_the_request():
    # Given a message deferred twice, retried now by an administrator
    fx = FX.caused_by(REQUEST)
    waiting = parcel(attempts=2, first_attempt_at=T0)
    # When the next hop defers it again: the third attempt, caused by the request
    (event,) = outcomes.after_delivery(fx, waiting, DEFERRED, False, NOW).events
    assert isinstance(event, DeliveryDeferred)
    assert (event.attempt, event.causation_id) == (3, REQUEST)
    # And the id is the one the timer's third attempt would have had: never both recorded
    timer = outcomes.after_delivery(FX, waiting, DEFERRED, False, NOW).events[0]
    assert event.event_id == timer.event_id
    assert timer.causation_id != REQUEST


def test_a_bounce_fails_the_message_now_naming_the_administrator_and_owes_a_dsn():
    fx = FX.caused_by(REQUEST)
    recorded = outcomes.returned_by_admin(fx, parcel(attempts=2, first_attempt_at=T0),
                                          "console:alice", NOW)
    (event,) = recorded.events
    assert isinstance(event, DeliveryFailed)
    assert "console:alice" in event.reply
    assert event.causation_id == REQUEST
    assert (event.attempts, event.recipients) == (2, [B, C])
    assert recorded.bounce is not None
    assert recorded.bounce.recipients == [B, C]


def test_a_delete_discards_the_message_as_deleted_by_the_administrator():
    event = outcomes.deleted_by_admin(FX.caused_by(REQUEST), parcel(attempts=1), NOW)
    assert isinstance(event, MessageDiscarded)
    assert (event.reason, event.causation_id, event.correlation_id) == (
        "deleted_by_admin", REQUEST, CORRELATION)


def test_carried_out_resends_are_remembered_and_the_memory_is_bounded():
    state = Parcels()
    for n in range(RESENDS_REMEMBERED + 5):
        state.evolve(BackupResent(
            event_id=UUID(int=n), occurred_at=T0, producer=REF, message_id=M,
            causation_id=UUID(int=10**6 + n), outcome="delivered", next_hop=HOP,
            recipients=[SENDER], reply="250 ok"), 0)
    assert len(state.resends_done) == RESENDS_REMEMBERED
    assert UUID(int=10**6 + RESENDS_REMEMBERED + 4) in state.resends_done
    assert UUID(int=10**6) not in state.resends_done
