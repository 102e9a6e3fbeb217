"""The KATA connection state window, folded from `katagate.control`.

What the product's *KATA connection state* window shows — the Central Node IPv4 address (and
port), the connection state, our public key fingerprint and KATA's — plus since when, the pin,
and the last error. Control is one partition, so the fold sees its events in log order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from katagate.projector.canonical import timestamp
from katagate.schemas import (
    CentralNodeObserved,
    ConnectionStateChanged,
    Event,
    KataProtectionToggled,
    KataSettingsChanged,
    KataSettingsReset,
    MailEvent,
    SensorKeyGenerated,
)

# States in which the last error is worth keeping after the connection recovers.
ERROR_STATES = frozenset({"rejected", "certificate_mismatch", "unreachable", "error"})


@dataclass(frozen=True)
class ConnectionView:
    central_node_address: str | None = None
    central_node_port: int = 443
    protection_enabled: bool = False
    state: str = "not_configured"
    previous: str | None = None
    since: str | None = None  # when the state was entered; None: no state recorded yet
    state_node: str | None = None  # "address:port" the state refers to
    detail: str = ""
    sensor_id: str | None = None
    sensor_fingerprint: str | None = None  # the KSMG (our) public key fingerprint
    sensor_key_at: str | None = None
    observed_fingerprint: str | None = None  # KATA's key as last seen in a handshake
    observed_node: str | None = None
    observed_at: str | None = None
    pinned_fingerprint: str | None = None
    pinned_node: str | None = None  # the address the pin belongs to
    pinned_port: int | None = None  # and its port (None: kept by a projector of before ports)
    observed_not_after: str | None = None  # the observed certificate's expiry, when recorded
    pin_required: bool = False  # require_manual_pin: an administrator must confirm the key
    last_error_state: str | None = None
    last_error_detail: str | None = None
    last_error_at: str | None = None

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ConnectionView:
        return cls(**state)


def evolve(view: ConnectionView, event: Event) -> ConnectionView:
    if isinstance(event, MailEvent):  # most of the log; none of it concerns the connection
        return view
    match event:
        case KataSettingsChanged() | KataSettingsReset():
            address = event.settings.central_node_address
            return replace(view, central_node_address=None if address is None else str(address),
                           central_node_port=event.settings.central_node_port)
        case KataProtectionToggled():
            return replace(view, protection_enabled=event.enabled)
        case SensorKeyGenerated():
            return replace(view, sensor_id=event.sensor_id, sensor_fingerprint=event.fingerprint,
                           sensor_key_at=timestamp(event.occurred_at))
        case CentralNodeObserved():
            node = f"{event.central_node.address}:{event.central_node.port}"
            # An administrator's pin carries no certificate: the same key keeps its expiry.
            expiry = event.certificate_not_after
            same = expiry is None and event.fingerprint == view.observed_fingerprint
            seen = replace(view, observed_fingerprint=event.fingerprint, observed_node=node,
                           observed_at=timestamp(event.occurred_at),
                           observed_not_after=view.observed_not_after if same
                           else None if expiry is None else timestamp(expiry))
            if event.pinned:
                return replace(seen, pinned_fingerprint=event.fingerprint,
                               pinned_node=str(event.central_node.address),
                               pinned_port=event.central_node.port)
            return seen
        case ConnectionStateChanged():
            at = event.central_node
            changed = replace(
                view, state=event.state, previous=event.previous,
                since=timestamp(event.occurred_at), detail=event.detail,
                state_node=None if at is None else f"{at.address}:{at.port}",
                pin_required=event.pin_required,
            )
            if event.state in ERROR_STATES:
                return replace(changed, last_error_state=event.state,
                               last_error_detail=event.detail,
                               last_error_at=timestamp(event.occurred_at))
            return changed
    return view


def render(view: ConnectionView) -> dict[str, Any]:
    """The window, with the pin that applies to the configured address and port."""
    applies = (view.pinned_node is not None and view.pinned_node == view.central_node_address
               and view.pinned_port in (None, view.central_node_port))
    confirm = view.pin_required and not applies and view.observed_fingerprint is not None
    return {
        "central_node_address": view.central_node_address,
        "central_node_port": view.central_node_port,
        "kata_protection_enabled": view.protection_enabled,
        # Connected refers to the node the state was recorded for: the configured one moved on
        # means Connecting until the scanner checks and pins the new one.
        "connection_state": "connecting" if view.state == "connected" and view.state_node
        != f"{view.central_node_address}:{view.central_node_port}" else view.state,
        "previous_state": view.previous,
        "since": view.since,
        "state_central_node": view.state_node,
        "detail": view.detail,
        "ksmg_public_key_fingerprint": view.sensor_fingerprint,
        "sensor_id": view.sensor_id,
        "sensor_key_generated_at": view.sensor_key_at,
        "kata_public_key_fingerprint": view.observed_fingerprint,
        "kata_public_key_observed_at": view.observed_at,
        "kata_public_key_observed_node": view.observed_node,
        "kata_public_key_pinned": view.pinned_fingerprint if applies else None,
        "kata_public_key_matches_pin": (
            applies and view.observed_fingerprint == view.pinned_fingerprint
        ),
        "kata_certificate_not_after": view.observed_not_after,
        # require_manual_pin: the fingerprint an administrator must confirm (katagate kata pin).
        "kata_public_key_confirmation_required": view.observed_fingerprint if confirm else None,
        "last_error": None if view.last_error_state is None else {
            "state": view.last_error_state,
            "detail": view.last_error_detail,
            "at": view.last_error_at,
        },
    }
