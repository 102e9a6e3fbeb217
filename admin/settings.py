"""The KATA Protection window as commands: change settings, "Set default values", and the global
KATA protection switch. Pure: the state, the actor, the time and the event id come in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from uuid import UUID

from pydantic import ValidationError

from katagate.admin import values
from katagate.admin.errors import InvalidCommand, NothingToChange
from katagate.schemas import (
    RESET_FIELDS,
    ControlState,
    KataProtectionToggled,
    KataSettings,
    KataSettingsChanged,
    KataSettingsReset,
)
from katagate.schemas.control import MIB, VERDICT_HEADER_FIELDS

# The product shows the quarantine size in MB; the events hold bytes. Either name may be used.
SIZE_MB = "quarantine_max_size_mb"
_MAX_BYTES = 2**63 - 1  # what every JSON and Kafka client reads as an integer


def _size_mb(value: object) -> int:
    return values.integer(SIZE_MB, value, 1, _MAX_BYTES // MIB, "MB") * MIB


# One parser per KataSettings field (a unit test keeps the two in step).
PARSERS: dict[str, Callable[[object], object]] = {
    "central_node_address": lambda v: values.ipv4("central_node_address", v),
    "central_node_port": lambda v: values.integer("central_node_port", v, 1, 65535),
    "response_timeout_s": lambda v: values.integer("response_timeout_s", v, 60, 86400,
                                                   "seconds"),
    "quarantine_max_bytes": lambda v: values.integer("quarantine_max_bytes", v, MIB, _MAX_BYTES,
                                                     "bytes (1 MB = 1048576 bytes)"),
    "quarantine_max_messages": lambda v: values.integer("quarantine_max_messages", v, 1,
                                                        4294967296),
    "ndr_enabled": lambda v: values.switch("ndr_enabled", v),
    "poll_interval_s": lambda v: values.integer("poll_interval_s", v, 1, 3600, "seconds"),
    "backup_max_age_days": lambda v: values.integer("backup_max_age_days", v, 1, 3650, "days"),
    "backup_max_bytes": lambda v: values.integer("backup_max_bytes", v, MIB, 2**50,
                                                 "bytes (1 MB = 1048576 bytes)"),
    "on_unavailable": lambda v: values.choice("on_unavailable", v, ("skip", "hold", "tempfail")),
    "hold_outcome": lambda v: values.choice("hold_outcome", v, ("skip", "reject")),
    "verdict_header_name": lambda v: values.header_name("verdict_header_name", v),
    "verdict_header_format": lambda v: values.header_format("verdict_header_format", v,
                                                            VERDICT_HEADER_FIELDS),
    "verdict_cache_ttl_s": lambda v: values.integer("verdict_cache_ttl_s", v, 0, 604800,
                                                    "seconds (0: no cache)"),
}
SETTING_NAMES: tuple[str, ...] = (*PARSERS, SIZE_MB)


def validate_settings(changes: Mapping[str, object]) -> dict[str, object]:
    """The typed value of each named setting, keyed by KataSettings field. Needs no state, so a
    front end can refuse bad input before it contacts Kafka."""
    if not changes:
        raise InvalidCommand(f"settings: name at least one setting to change "
                             f"({', '.join(SETTING_NAMES)})", allowed=list(SETTING_NAMES))
    unknown = [name for name in changes if name not in SETTING_NAMES]
    if unknown:
        raise InvalidCommand(f"{unknown[0]}: unknown setting; known settings: "
                             f"{', '.join(SETTING_NAMES)}", field=str(unknown[0]),
                             allowed=list(SETTING_NAMES))
    if SIZE_MB in changes and "quarantine_max_bytes" in changes:
        raise InvalidCommand(f"{SIZE_MB}: give the quarantine size once, in MB or in bytes "
                             "(quarantine_max_bytes), not both")
    typed: dict[str, object] = {}
    for name, value in changes.items():
        if name == SIZE_MB:
            typed["quarantine_max_bytes"] = _size_mb(value)
        else:
            typed[name] = PARSERS[name](value)
    return typed


def _rebuild(current: KataSettings, typed: Mapping[str, object]) -> KataSettings:
    try:
        return KataSettings.model_validate({**current.model_dump(), **typed})
    except ValidationError as exc:  # the parsers above should make this unreachable
        first = exc.errors()[0]
        raise InvalidCommand(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


def describe(name: str, settings: KataSettings) -> str:
    value = getattr(settings, name)
    if name in ("quarantine_max_bytes", "backup_max_bytes"):
        return f"{value / MIB:g} MB" if value % MIB == 0 else f"{value} bytes"
    if name.endswith("_s"):
        return f"{value} s"
    if name.endswith("_days"):
        return f"{value} days"
    if isinstance(value, bool):
        return "on" if value else "off"
    return "(not set)" if value is None else str(value)


def change_settings(
    state: ControlState, changes: Mapping[str, object], *, actor: str, now: datetime,
    event_id: UUID,
) -> KataSettingsChanged:
    """Apply the named settings; refuse a value out of range, or a change that changes nothing."""
    producer = values.actor_ref(actor)
    typed = validate_settings(changes)
    new = _rebuild(state.settings, typed)
    changed = [n for n in KataSettings.model_fields
               if getattr(new, n) != getattr(state.settings, n)]
    if not changed:
        already = ", ".join(f"{n} is already {describe(n, new)}" for n in typed)
        raise NothingToChange(f"nothing to change: {already}")
    return KataSettingsChanged(
        event_id=event_id, occurred_at=now, producer=producer, version=state.version + 1,
        actor=actor, settings=new, changed=changed,
    )


def reset_settings(
    state: ControlState, *, actor: str, now: datetime, event_id: UUID
) -> KataSettingsReset:
    """"Set default values": the port, the response timeout and both quarantine limits go back
    to the product's defaults; the address, NDR and the rest stay as they are."""
    producer = values.actor_ref(actor)
    defaults = KataSettings.defaults()
    new = _rebuild(state.settings, {f: getattr(defaults, f) for f in RESET_FIELDS})
    if new == state.settings:
        held = ", ".join(f"{f} {describe(f, new)}" for f in RESET_FIELDS)
        raise NothingToChange(f"nothing to change: the defaults are already in force ({held})")
    return KataSettingsReset(
        event_id=event_id, occurred_at=now, producer=producer, version=state.version + 1,
        actor=actor, settings=new,
    )


def set_protection(
    state: ControlState, enabled: bool, *, actor: str, now: datetime, event_id: UUID
) -> KataProtectionToggled:
    """The global KATA protection switch."""
    producer = values.actor_ref(actor)
    if state.protection_enabled == enabled:
        raise NothingToChange(
            f"kata_protection: nothing to change, already {'enabled' if enabled else 'disabled'}"
        )
    return KataProtectionToggled(
        event_id=event_id, occurred_at=now, producer=producer, version=state.version + 1,
        actor=actor, enabled=enabled,
    )
