"""The connection lifecycle as a pure decision: Given a view, When a check, Then events."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address

from scanner.connection import Check, ConnectionView, Context, decide, evolve, next_check_in
from schemas import (
    CentralNodeObserved,
    ConnectionStateChanged,
    KataSettings,
    KataSettingsChanged,
    NodeAddress,
    ProducerRef,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
NODE = NodeAddress(address=IPv4Address("127.0.0.1"), port=8443)
KEY_A = ":".join(["AA"] * 32)
KEY_B = ":".join(["BB"] * 32)


def ctx() -> Context:
    counter = itertools.count(1)
    return Context(NOW, ProducerRef(stage="scanner", instance="s-0"),
                   (uuid.UUID(int=n) for n in counter))


def configured() -> ConnectionView:
    settings = KataSettings(central_node_address=NODE.address, central_node_port=NODE.port)
    change = KataSettingsChanged(
        event_id=uuid.uuid4(), occurred_at=NOW, producer=ProducerRef(stage="admin", instance="a"),
        version=1, actor="admin", settings=settings, changed=["central_node_address"],
    )
    return evolve(ConnectionView(), change)


def fold(view: ConnectionView, events) -> ConnectionView:
    for event in events:
        view = evolve(view, event)
    return view


def test_given_a_pending_sensor_when_checked_then_awaiting_confirmation_and_the_key_is_shown():
    events = decide(configured(), Check(NODE, KEY_A, 401, "integration request pending"), ctx())
    observed, changed = events
    assert isinstance(observed, CentralNodeObserved)
    assert (observed.fingerprint, observed.pinned) == (KEY_A, False)
    assert isinstance(changed, ConnectionStateChanged)
    assert changed.state == "awaiting_confirmation"


def test_given_accepted_when_first_connected_then_the_key_is_pinned():
    view = fold(configured(), decide(configured(), Check(NODE, KEY_A, 401, "pending"), ctx()))
    events = decide(view, Check(NODE, KEY_A, 200), ctx())
    assert [type(e).__name__ for e in events] == ["CentralNodeObserved", "ConnectionStateChanged"]
    assert events[0].pinned is True  # type: ignore[attr-defined]
    view = fold(view, events)
    assert (view.state, view.effective_pin) == ("connected", KEY_A)


def test_given_connected_when_checked_again_then_nothing_is_written():
    view = configured()
    view = fold(view, decide(view, Check(NODE, KEY_A, 200), ctx()))
    assert decide(view, Check(NODE, KEY_A, 204), ctx()) == []


def test_given_a_pin_when_another_key_appears_then_certificate_mismatch_and_the_pin_stays():
    view = configured()
    view = fold(view, decide(view, Check(NODE, KEY_A, 200), ctx()))
    events = decide(view, Check(NODE, KEY_B, None, "key changed", mismatch=True), ctx())
    view = fold(view, events)
    assert view.state == "certificate_mismatch"
    assert (view.observed, view.effective_pin) == (KEY_B, KEY_A)


def test_given_a_rejection_then_rejected_by_kata():
    events = decide(configured(), Check(NODE, KEY_A, 401, "integration request rejected"), ctx())
    assert fold(configured(), events).state == "rejected"


def test_given_no_answer_then_unreachable_and_backoff_grows_to_the_poll_interval():
    view = fold(configured(), decide(configured(), Check(NODE, None, None, "refused"), ctx()))
    assert view.state == "unreachable"
    delays = [next_check_in(view, failures, recheck_s=1.0) for failures in range(10)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == view.settings.poll_interval_s


def test_given_a_pin_for_another_address_then_it_does_not_apply():
    view = configured()
    view = fold(view, decide(view, Check(NODE, KEY_A, 200), ctx()))
    moved = KataSettings(central_node_address=IPv4Address("127.0.0.2"))
    change = KataSettingsChanged(
        event_id=uuid.uuid4(), occurred_at=NOW, producer=ProducerRef(stage="admin", instance="a"),
        version=2, actor="admin", settings=moved, changed=["central_node_address"],
    )
    assert fold(view, [change]).effective_pin is None


def test_given_no_address_then_not_configured():
    view = ConnectionView(state="unreachable", since=NOW, central_node=NODE)
    events = decide(view, None, ctx())
    assert [e.state for e in events] == ["not_configured"]  # type: ignore[attr-defined]
