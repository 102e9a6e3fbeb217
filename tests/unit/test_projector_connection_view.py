"""The projector's connection window, Given / When / Then: what the product's "KATA connection
state" window shows, folded from the control events alone."""

from __future__ import annotations

import uuid
from functools import reduce
from ipaddress import IPv4Address

from katagate.projector import connection
from katagate.projector.connection import ConnectionView
from katagate.schemas import CentralNodeObserved, ConnectionStateChanged, NodeAddress
from tests.unit.fixtures.events import FINGERPRINT, NODE_FINGERPRINT, SENSOR_ID
from tests.unit.test_projector_flows import control_flow

# -- connection state ---------------------------------------------------------------------

def test_connection_window_shows_address_state_and_both_fingerprints() -> None:
    # Given settings, our key, the connection confirmed and KATA's key pinned
    view = reduce(connection.evolve, (e for _t, e in control_flow()), ConnectionView())
    # Then the window shows what the product's "KATA connection state" window shows
    window = connection.render(view)
    assert window["central_node_address"] == "10.20.30.40"
    assert window["central_node_port"] == 443
    assert window["connection_state"] == "connected"
    assert window["previous_state"] == "awaiting_confirmation"
    assert window["since"] == "2025-03-14T09:23:53.000000Z"
    assert window["ksmg_public_key_fingerprint"] == FINGERPRINT
    assert window["sensor_id"] == SENSOR_ID
    assert window["kata_public_key_fingerprint"] == NODE_FINGERPRINT
    assert window["kata_public_key_pinned"] == NODE_FINGERPRINT
    assert window["kata_public_key_matches_pin"] is True
    assert window["kata_protection_enabled"] is True


def test_connection_keeps_the_last_error_after_recovery() -> None:
    # Given a connection that became unreachable
    events = [e for _t, e in control_flow()]
    down = events[4].model_copy(update={"state": "unreachable", "previous": "connected",
                                        "detail": "connection refused"})
    up = events[4].model_copy(update={"occurred_at": events[4].occurred_at.replace(hour=10)})
    # When it recovers
    view = reduce(connection.evolve, [*events, down, up], ConnectionView())
    # Then the state is connected and the last error is still on record
    window = connection.render(view)
    assert window["connection_state"] == "connected"
    assert window["detail"] == ""
    assert window["last_error"] == {"state": "unreachable", "detail": "connection refused",
                                    "at": "2025-03-14T09:23:53.000000Z"}


def test_a_pin_for_another_central_node_does_not_apply() -> None:
    # Given KATA's key pinned for 10.20.30.40, then a key observed unpinned at another node
    events = [e for _t, e in control_flow()]
    other = NodeAddress(address=IPv4Address("10.9.9.9"), port=443)
    observed = CentralNodeObserved.model_validate({**events[5].model_dump(),
                                                   "central_node": other, "pinned": False,
                                                   "fingerprint": FINGERPRINT})
    changed = events[0].model_copy(update={"settings": events[0].settings.model_copy(
        update={"central_node_address": IPv4Address("10.9.9.9")})})
    # When the settings move to that node
    window = connection.render(reduce(connection.evolve, [*events, observed, changed],
                                      ConnectionView()))
    # Then no pin applies, and the observed key is the new one
    assert window["central_node_address"] == "10.9.9.9"
    assert window["kata_public_key_pinned"] is None
    assert window["kata_public_key_fingerprint"] == FINGERPRINT
    assert window["kata_public_key_matches_pin"] is False


def test_a_pin_for_another_port_does_not_apply() -> None:
    # Given KATA's key pinned for 10.20.30.40:443
    events = [e for _t, e in control_flow()]
    changed = events[0].model_copy(update={"settings": events[0].settings.model_copy(
        update={"central_node_port": 8443})})
    # When the port moves
    window = connection.render(reduce(connection.evolve, [*events, changed], ConnectionView()))
    # Then the pin does not follow it
    assert window["kata_public_key_pinned"] is None


def test_the_window_shows_the_certificate_expiry_and_a_key_waiting_for_an_administrator() -> None:
    # Given require_manual_pin: KATA's key observed unpinned, with its certificate's expiry,
    # and the state Connecting with the pin left to an administrator
    flow = [e for _t, e in control_flow()]
    events = flow[:4]
    node = NodeAddress(address=IPv4Address("10.20.30.40"), port=443)
    observed = CentralNodeObserved.model_validate({
        **flow[5].model_dump(), "central_node": node,
        "fingerprint": NODE_FINGERPRINT, "pinned": False,
        "certificate_not_after": "2027-01-31T00:00:00Z"})
    waiting = ConnectionStateChanged(
        event_id=uuid.uuid4(), occurred_at=events[3].occurred_at, producer=events[3].producer,
        state="connecting", previous="awaiting_confirmation", central_node=node,
        detail="require_manual_pin is on", pin_required=True)
    view = reduce(connection.evolve, [*events, observed, waiting], ConnectionView())
    # Then the window says which fingerprint an administrator must confirm, and the expiry
    window = connection.render(view)
    assert window["connection_state"] == "connecting"
    assert window["kata_public_key_confirmation_required"] == NODE_FINGERPRINT
    assert window["kata_certificate_not_after"] == "2027-01-31T00:00:00.000000Z"
    # When the administrator pins it, Then nothing is waiting any more
    pinned = observed.model_copy(update={"event_id": uuid.uuid4(), "pinned": True,
                                         "certificate_not_after": None})
    window = connection.render(connection.evolve(view, pinned))
    assert window["kata_public_key_confirmation_required"] is None
    assert window["kata_public_key_pinned"] == NODE_FINGERPRINT
    assert window["kata_certificate_not_after"] == "2027-01-31T00:00:00.000000Z"  # kept


def test_a_fresh_view_is_not_configured() -> None:
    window = connection.render(ConnectionView())
    assert window["connection_state"] == "not_configured"
    assert window["since"] is None
    assert window["central_node_address"] is None
