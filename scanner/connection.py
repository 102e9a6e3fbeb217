"""The connection to the Central Node, as a pure fold over control events and a pure decision
on each connection check. No I/O, no clock, no random ids: they arrive as arguments.

Pinning: the Central Node's key is pinned at the first successful connection (or explicitly by
an administrator, a `CentralNodeObserved` with `pinned=True` from the admin stage) and belongs to
the address it was pinned for; another key afterwards is *Certificate mismatch*.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from ipaddress import IPv4Address
from uuid import UUID

from schemas import (
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
    pinned_for: IPv4Address | None = None
    observed: str | None = None
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
        """The pin that applies to the configured address (a pin for another node does not)."""
        address = self.settings.central_node_address
        return self.pinned if address is not None and self.pinned_for == address else None


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
                pinned_for=event.central_node.address,
            )
        case CentralNodeObserved():
            return replace(view, observed=event.fingerprint)
        case ConnectionStateChanged():
            return replace(
                view, state=event.state, since=event.occurred_at,
                central_node=event.central_node, detail=event.detail,
            )
    return view


@dataclass(frozen=True)
class Check:
    """What one connection check saw. `status` is None when no request was answered."""

    node: NodeAddress
    fingerprint: str | None
    status: int | None
    problem: str = ""
    mismatch: bool = False


def assess(check: Check | None) -> tuple[ConnectionState, str]:
    if check is None:
        return "not_configured", "no KATA Central Node address is set"
    if check.mismatch:
        return "certificate_mismatch", check.problem
    if check.status is None:
        return "unreachable", check.problem
    if check.status == 401:
        rejected = "reject" in check.problem.lower()
        return ("rejected" if rejected else "awaiting_confirmation"), check.problem
    if check.status in (200, 204, 404):
        return "connected", ""
    return "error", check.problem or f"unexpected reply {check.status}"


@dataclass(frozen=True)
class Context:
    """What a decision needs from outside: when, who, and where new event ids come from."""

    now: datetime
    producer: ProducerRef
    ids: Iterator[UUID]


def decide(view: ConnectionView, check: Check | None, ctx: Context) -> list[Event]:
    state, detail = assess(check)
    node = check.node if check is not None else None
    events: list[Event] = []
    pin = view.effective_pin
    if check is not None and check.fingerprint is not None:
        pin_now = state == "connected" and pin is None
        if check.fingerprint != view.observed or pin_now:
            events.append(CentralNodeObserved(
                event_id=next(ctx.ids), occurred_at=ctx.now, producer=ctx.producer,
                central_node=check.node, fingerprint=check.fingerprint,
                pinned=pin_now or check.fingerprint == pin,
            ))
    # The first check always records a state: the default view is not a recorded one.
    if state != view.state or node != view.central_node or view.since is None:
        events.append(ConnectionStateChanged(
            event_id=next(ctx.ids), occurred_at=ctx.now, producer=ctx.producer,
            state=state, previous=view.state if view.since is not None else None,
            central_node=node, detail=detail[:1000],
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
    if view.state in ("not_configured", "awaiting_confirmation", "rejected"):
        return min(interval, recheck_s)
    return min(interval, recheck_s * (1 << min(failures, 10)))
