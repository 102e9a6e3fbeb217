"""The KATA settings a fresh installation starts with, as the control events an administrator
would have written: only when nothing was ever configured."""

from __future__ import annotations

import uuid
from datetime import datetime

from katagate.schemas import (
    ControlState,
    Event,
    KataProtectionToggled,
    KataSettings,
    KataSettingsChanged,
    ProducerRef,
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
