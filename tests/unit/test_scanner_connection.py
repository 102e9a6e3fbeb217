"""The connection lifecycle as a pure decision: Given a view, When a check, Then events."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address

from katagate.scanner.connection import (
    Check,
    ConnectionView,
    Context,
    announce,
    decide,
    destination,
    evolve,
    next_check_in,
)
from katagate.schemas import (
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


def configured(node: NodeAddress = NODE, view: ConnectionView | None = None) -> ConnectionView:
    settings = KataSettings(central_node_address=node.address, central_node_port=node.port)
    change = KataSettingsChanged(
        event_id=uuid.uuid4(), occurred_at=NOW, producer=ProducerRef(stage="admin", instance="a"),
        version=1, actor="admin", settings=settings, changed=["central_node_address"],
    )
    return evolve(view or ConnectionView(), change)


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
    events = decide(view, Check(NODE, KEY_A, 200, genuine=True), ctx())
    assert [type(e).__name__ for e in events] == ["CentralNodeObserved", "ConnectionStateChanged"]
    assert events[0].pinned is True  # type: ignore[attr-defined]
    view = fold(view, events)
    assert (view.state, view.effective_pin) == ("connected", KEY_A)


def test_given_connected_when_checked_again_then_nothing_is_written():
    view = configured()
    view = fold(view, decide(view, Check(NODE, KEY_A, 200, genuine=True), ctx()))
    assert decide(view, Check(NODE, KEY_A, 204), ctx()) == []


def test_given_a_pin_when_another_key_appears_then_certificate_mismatch_and_the_pin_stays():
    view = configured()
    view = fold(view, decide(view, Check(NODE, KEY_A, 200, genuine=True), ctx()))
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
    view = fold(view, decide(view, Check(NODE, KEY_A, 200, genuine=True), ctx()))
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


# -- nothing goes to an unpinned node ------------------------------------------------------

OTHER = NodeAddress(address=IPv4Address("127.0.0.2"), port=8443)
NOT_AFTER = datetime(2027, 1, 31, tzinfo=UTC)


def connected_to(node: NodeAddress, key: str) -> ConnectionView:
    view = configured(node)
    return fold(view, decide(view, Check(node, key, 200, genuine=True), ctx()))


def test_given_connected_when_the_address_changes_then_no_destination_until_checked_and_pinned():
    view = connected_to(NODE, KEY_A)
    assert destination(view) == (NODE, KEY_A)
    moved = configured(OTHER, view)
    # The recorded state still reads Connected (for the old node): content goes nowhere.
    assert moved.state == "connected"
    assert destination(moved) is None
    announced = announce(moved, ctx())
    assert [(e.state, e.central_node) for e in announced] == [  # type: ignore[attr-defined]
        ("connecting", OTHER)]
    moved = fold(moved, announced)
    assert (moved.state, destination(moved)) == ("connecting", None)
    assert announce(moved, ctx()) == []  # once per new node
    moved = fold(moved, decide(moved, Check(OTHER, KEY_B, 200, genuine=True), ctx()))
    assert (moved.state, destination(moved)) == ("connected", (OTHER, KEY_B))


def test_given_a_pin_for_another_port_then_it_does_not_apply():
    view = connected_to(NODE, KEY_A)
    moved = configured(NodeAddress(address=NODE.address, port=9443), view)
    assert (moved.effective_pin, destination(moved)) == (None, None)


def test_given_no_pin_when_an_https_server_answers_404_then_nothing_is_pinned():
    view = configured()
    for status in (404, 204, 200):  # a bare status, or a 200 not in the API's shape
        events = decide(view, Check(NODE, KEY_A, status), ctx())
        after = fold(view, events)
        assert after.state == "error"
        assert "not pinned" in after.detail
        assert (after.effective_pin, destination(after)) == (None, None)
        assert not any(isinstance(e, CentralNodeObserved) and e.pinned for e in events)


def test_given_a_pinned_node_when_it_answers_404_then_it_stays_connected():
    view = connected_to(NODE, KEY_A)
    assert decide(view, Check(NODE, KEY_A, 404), ctx()) == []


def test_given_require_manual_pin_when_kata_answers_then_connecting_and_an_admin_must_confirm():
    view = configured()
    events = decide(view, Check(NODE, KEY_A, 200, genuine=True), ctx(), manual_pin=True)
    view = fold(view, events)
    assert (view.state, view.pin_required, view.observed) == ("connecting", True, KEY_A)
    assert view.effective_pin is None
    assert destination(view) is None
    assert KEY_A in view.detail
    assert "katagate kata pin" in view.detail
    # Checked again: nothing new to record, still no pin.
    assert decide(view, Check(NODE, KEY_A, 200, genuine=True), ctx(), manual_pin=True) == []
    # When the administrator pins the key shown, Then the next check connects.
    pinned = CentralNodeObserved(
        event_id=uuid.uuid4(), occurred_at=NOW, producer=ProducerRef(stage="admin", instance="a"),
        central_node=NODE, fingerprint=KEY_A, pinned=True,
    )
    view = fold(view, [pinned])
    view = fold(view, decide(view, Check(NODE, KEY_A, 200, genuine=True), ctx(), manual_pin=True))
    assert (view.state, view.pin_required, destination(view)) == ("connected", False, (NODE, KEY_A))


def test_given_a_certificate_expiry_when_first_seen_or_changed_then_it_is_recorded():
    view = configured()
    view = fold(view, decide(view, Check(NODE, KEY_A, 200, genuine=True, not_after=NOT_AFTER),
                             ctx()))
    assert view.observed_not_after == NOT_AFTER
    assert decide(view, Check(NODE, KEY_A, 200, not_after=NOT_AFTER), ctx()) == []
    renewed = datetime(2028, 1, 31, tzinfo=UTC)
    (observed,) = decide(view, Check(NODE, KEY_A, 200, not_after=renewed), ctx())
    assert isinstance(observed, CentralNodeObserved)
    assert (observed.certificate_not_after, observed.pinned) == (renewed, True)
