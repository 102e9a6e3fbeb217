"""The KATA settings a fresh installation starts with, as the control events an administrator
would have written: only when nothing was ever configured; and, at each later start, what the
file's [kata] names differently from the control state (`file_changes`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from katagate.admin.settings import (
    SIZE_MB,
    change_settings,
    describe,
    set_protection,
    validate_settings,
)
from katagate.schemas import (
    ControlState,
    Event,
    KataProtectionToggled,
    KataSettings,
    KataSettingsChanged,
    ProducerRef,
    evolve_control,
)


def first_start_events(
    current: ControlState, settings: KataSettings, protection: bool, actor: str, now: datetime
) -> list[Event]:
    if current.version > 0:
        return []  # configured before: the log, not the file, says what is in force
    producer = ProducerRef(stage="admin", instance=actor)
    changed = [name for name in KataSettings.model_fields
               if getattr(settings, name) != getattr(KataSettings(), name)]
    events: list[Event] = []
    version = 1
    if changed:
        events.append(KataSettingsChanged(
            event_id=uuid.uuid4(), occurred_at=now, producer=producer, version=version,
            actor=actor, settings=settings, changed=changed,
        ))
        version += 1
    if protection:
        events.append(KataProtectionToggled(
            event_id=uuid.uuid4(), occurred_at=now, producer=producer, version=version,
            actor=actor, enabled=True,
        ))
    return events


FILE_ACTOR = "config-file"  # who changed a setting by editing [kata] in katagate.toml


def file_changes(
    current: ControlState, named: Mapping[str, object], protection: bool | None, now: datetime,
) -> tuple[list[Event], list[str]]:
    """After the first start: the [kata] values the file names that the control state does not
    hold, as the events the admin commands write (a settings change, the protection switch),
    actor `config-file`; and one line per changed setting. A value the control state refuses
    raises InvalidCommand naming it; what the file does not name stays as the log has it."""
    typed = validate_settings(named) if named else {}
    changes = {name: named_value(named, name) for name, value in typed.items()
               if getattr(current.settings, name) != value}
    events: list[Event] = []
    said: list[str] = []
    state = current
    if changes:
        event = change_settings(state, changes, actor=FILE_ACTOR, now=now,
                                event_id=uuid.uuid4())
        said += [f"[kata] {name}: {describe(name, state.settings)} -> "
                 f"{describe(name, event.settings)} (actor {FILE_ACTOR})"
                 for name in event.changed]
        events.append(event)
        state = evolve_control(state, event)
    if protection is not None and protection != state.protection_enabled:
        events.append(set_protection(state, protection, actor=FILE_ACTOR, now=now,
                                     event_id=uuid.uuid4()))
        said.append(f"[kata] protection: {'off -> on' if protection else 'on -> off'} "
                    f"(actor {FILE_ACTOR})")
    return events, said


def named_value(named: Mapping[str, object], field: str) -> object:
    """The file's value for a KataSettings field (the quarantine size may be named in MB)."""
    return named[field] if field in named else named[SIZE_MB]
