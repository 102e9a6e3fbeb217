"""The connection to the Central Node, as a pure fold over control events and a pure decision
on each connection check. No I/O, no clock, no random ids: they arrive as arguments.

Pinning: the Central Node's key is pinned at the first real exchange with it — an authenticated
sensor request answered in the scanner API's own shape, which no other HTTPS server gives — or
explicitly by an administrator (a `CentralNodeObserved` with `pinned=True` from the admin stage;
the only way with `require_manual_pin`). A pin belongs to the address and port it was made for;
another key afterwards is *Certificate mismatch*. A new address or port reads *Connecting* until
its key is pinned, and no message content goes anywhere without a pin (`destination`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from uuid import UUID

from katagate.schemas import (
    CentralNodeObserved,
    ConnectionState,
    ConnectionStateChanged,
    Event,
    KataProtectionToggled,
    KataSettings,
    KataSettingsChanged,
    KataSettingsReset,
    NodeAddress,
    ProducerRef,
    SensorKeyGenerated,
)


@dataclass(frozen=True)
class ConnectionView:
    settings: KataSettings = field(default_factory=KataSettings)
    protection_enabled: bool = False
    state: ConnectionState = "not_configured"
    since: datetime | None = None
    central_node: NodeAddress | None = None
    detail: str = ""
    pinned: str | None = None
    pinned_for: NodeAddress | None = None
    observed: str | None = None
    observed_not_after: datetime | None = None  # the observed certificate's expiry
    pin_required: bool = False  # an administrator must confirm the observed key
    sensor_id: str | None = None
    sensor_fingerprint: str | None = None

    @property
    def target(self) -> NodeAddress | None:
        address = self.settings.central_node_address
        return None if address is None else NodeAddress(
            address=address, port=self.settings.central_node_port
        )

    @property
    def effective_pin(self) -> str | None:
        """The pin that applies to the configured node (a pin for another node does not)."""
        target = self.target
        return self.pinned if target is not None and self.pinned_for == target else None


def destination(view: ConnectionView) -> tuple[NodeAddress, str] | None:
    """Where message content may go, with the key to insist on: the configured node once it was
    checked *Connected* and its key pinned; else nowhere (a new address is not the old one)."""
    target, pin = view.target, view.effective_pin
    if view.state != "connected" or target is None or pin is None or view.central_node != target:
        return None
    return target, pin


def evolve(view: ConnectionView, event: Event) -> ConnectionView:
    match event:
        case KataSettingsChanged() | KataSettingsReset():
            return replace(view, settings=event.settings)
        case KataProtectionToggled():
            return replace(view, protection_enabled=event.enabled)
        case SensorKeyGenerated():
            return replace(view, sensor_id=event.sensor_id, sensor_fingerprint=event.fingerprint)
        case CentralNodeObserved(pinned=True):
            return replace(
                view, observed=event.fingerprint, pinned=event.fingerprint,
                pinned_for=event.central_node, observed_not_after=_expiry(view, event),
            )
        case CentralNodeObserved():
            return replace(view, observed=event.fingerprint,
                           observed_not_after=_expiry(view, event))
        case ConnectionStateChanged():
            return replace(
                view, state=event.state, since=event.occurred_at,
                central_node=event.central_node, detail=event.detail,
                pin_required=event.pin_required,
            )
    return view


def _expiry(view: ConnectionView, event: CentralNodeObserved) -> datetime | None:
    """An administrator's pin carries no certificate: the same key keeps the expiry seen."""
    if event.certificate_not_after is None and event.fingerprint == view.observed:
        return view.observed_not_after
    return event.certificate_not_after


@dataclass(frozen=True)
class Check:
    """What one connection check saw. `status` is None when no request was answered; `genuine`
    when the reply had the scanner API's own shape (a detects page), not just a status code."""

    node: NodeAddress
    fingerprint: str | None
    status: int | None
    problem: str = ""
    mismatch: bool = False
    genuine: bool = False
    not_after: datetime | None = None


@dataclass(frozen=True)
class Assessment:
    state: ConnectionState
    detail: str = ""
    pin: bool = False  # trust on first use: pin the key seen now
    pin_required: bool = False


def assess(check: Check | None, pinned: str | None, manual_pin: bool) -> Assessment:
    """The state a check shows, given the pin for its node (the transport already refused any
    other key) and whether pinning is left to an administrator."""
    if check is None:
        return Assessment("not_configured", "no KATA Central Node address is set")
    if check.mismatch:
        return Assessment("certificate_mismatch", check.problem)
    if check.status is None:
        return Assessment("unreachable", check.problem)
    if check.status == 401:
        rejected = "reject" in check.problem.lower()
        return Assessment("rejected" if rejected else "awaiting_confirmation", check.problem)
    if check.status not in (200, 204, 404):
        return Assessment("error", check.problem or f"unexpected reply {check.status}")
    if pinned is not None:
        return Assessment("connected")
    node = f"{check.node.address}:{check.node.port}"
    if not check.genuine:
        # Any HTTPS server answers 404: only the API's own reply to our sensor earns a pin.
        return Assessment("error", (
            f"{node} answered {check.status}, not as a KATA scanner API answers an accepted "
            f"sensor (a list of detects); its key {check.fingerprint} is not pinned and "
            "nothing is sent to it (if it is the Central Node, compare the key with KATA's "
            "and pin it: katagate kata pin)"))
    if manual_pin:
        return Assessment("connecting", (
            f"require_manual_pin is on: an administrator must confirm the KATA public key "
            f"fingerprint {check.fingerprint} of {node} (katagate kata pin) before anything "
            "is sent to it"), pin_required=True)
    return Assessment("connected", pin=True)


@dataclass(frozen=True)
class Context:
    """What a decision needs from outside: when, who, and where new event ids come from."""

    now: datetime
    producer: ProducerRef
    ids: Iterator[UUID]


def announce(view: ConnectionView, ctx: Context) -> list[Event]:
    """Before the first check of a node the state does not refer to (a new address or port):
    *Connecting*, so the window never reads *Connected* for a node not yet checked and pinned."""
    target = view.target
    if target is None or target == view.central_node:
        return []
    return [ConnectionStateChanged(
        event_id=next(ctx.ids), occurred_at=ctx.now, producer=ctx.producer,
        state="connecting", previous=view.state if view.since is not None else None,
        central_node=target,
        detail=f"checking {target.address}:{target.port}; nothing is sent to it before its key "
               "is pinned",
    )]


def decide(
    view: ConnectionView, check: Check | None, ctx: Context, manual_pin: bool = False
) -> list[Event]:
    pin = view.effective_pin
    verdict = assess(check, pin, manual_pin)
    node = check.node if check is not None else None
    events: list[Event] = []
    if check is not None and check.fingerprint is not None:
        expiry_news = check.not_after is not None and check.not_after != view.observed_not_after
        if check.fingerprint != view.observed or verdict.pin or expiry_news:
            events.append(CentralNodeObserved(
                event_id=next(ctx.ids), occurred_at=ctx.now, producer=ctx.producer,
                central_node=check.node, fingerprint=check.fingerprint,
                pinned=verdict.pin or check.fingerprint == pin,
                certificate_not_after=check.not_after,
            ))
    # The first check always records a state: the default view is not a recorded one.
    if (verdict.state != view.state or node != view.central_node or view.since is None
            or verdict.pin_required != view.pin_required):
        events.append(ConnectionStateChanged(
            event_id=next(ctx.ids), occurred_at=ctx.now, producer=ctx.producer,
            state=verdict.state, previous=view.state if view.since is not None else None,
            central_node=node, detail=verdict.detail[:1000], pin_required=verdict.pin_required,
        ))
    return events


def sensor_key_events(
    view: ConnectionView, sensor_id: str, fingerprint: str, certificate_pem: str, ctx: Context
) -> list[Event]:
    """Record our key once: when the log has none, or another one (the key was replaced)."""
    if view.sensor_fingerprint == fingerprint and view.sensor_id == sensor_id:
        return []
    return [SensorKeyGenerated(
        event_id=next(ctx.ids), occurred_at=ctx.now, producer=ctx.producer,
        sensor_id=sensor_id, fingerprint=fingerprint, certificate_pem=certificate_pem,
    )]


def next_check_in(view: ConnectionView, failures: int, recheck_s: float) -> float:
    """Seconds until the next check: the poll interval when healthy, quick while a person is
    expected to act (accepting the sensor), exponential backoff after failures."""
    interval = float(view.settings.poll_interval_s)
    if view.state == "connected":
        return interval
    if view.state in ("not_configured", "connecting", "awaiting_confirmation", "rejected"):
        return min(interval, recheck_s)
    return min(interval, recheck_s * (1 << min(failures, 10)))
