"""One discriminated union decodes every event, through one TypeAdapter.

Records are matched by their `type` string, upcast to the current `schema_version`, then
validated. Unknown types and versions newer than this code are errors, never guessed at.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, get_args

from pydantic import Field, TypeAdapter, ValidationError

from katagate.schemas.backup import (
    BackupDeleteRequested,
    BackupRemoved,
    BackupResendRequested,
    BackupResent,
    BackupRetained,
)
from katagate.schemas.control import (
    CentralNodeObserved,
    ConnectionStateChanged,
    KataProtectionToggled,
    KataSettingsChanged,
    KataSettingsReset,
    RuleChanged,
    RuleCreated,
    RuleDeleted,
    RuleKataToggled,
    SensorKeyGenerated,
)
from katagate.schemas.delivery_queue import QueueActionRequested
from katagate.schemas.envelope import Event, MailEvent
from katagate.schemas.errors import SchemaError
from katagate.schemas.hold import QuarantineHeld, QuarantineHoldEnded
from katagate.schemas.mail import (
    ActionDecided,
    BackupStored,
    DeliveryDeferred,
    DeliveryFailed,
    ForcedDelete,
    ForcedRelease,
    LateVerdictReceived,
    MessageDelivered,
    MessageDiscarded,
    MessageReceived,
    NdrSent,
    NdrSuppressed,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineReleased,
    ScanFailed,
    ScanSubmitted,
    ScanTimedOut,
    VerdictReceived,
)
from katagate.schemas.notifications import (
    NotificationComposed,
    NotificationHeld,
    NotificationSettingsChanged,
)
from katagate.schemas.upcasters import upcast
from katagate.schemas.usage import QuarantineUsageRecorded

AnyEvent = Annotated[
    MessageReceived
    | QuarantineAdmitted
    | QuarantineDenied
    | QuarantineReleased
    | ForcedRelease
    | ForcedDelete
    | ScanSubmitted
    | ScanFailed
    | VerdictReceived
    | LateVerdictReceived
    | ScanTimedOut
    | ActionDecided
    | BackupStored
    | MessageDelivered
    | DeliveryDeferred
    | DeliveryFailed
    | MessageDiscarded
    | NdrSent
    | NdrSuppressed
    | BackupRetained
    | BackupRemoved
    | BackupDeleteRequested
    | BackupResendRequested
    | BackupResent
    | QueueActionRequested
    | KataSettingsChanged
    | KataSettingsReset
    | KataProtectionToggled
    | RuleCreated
    | RuleChanged
    | RuleDeleted
    | RuleKataToggled
    | SensorKeyGenerated
    | CentralNodeObserved
    | ConnectionStateChanged
    | QuarantineHeld
    | QuarantineHoldEnded
    | NotificationSettingsChanged
    | NotificationComposed
    | NotificationHeld
    | QuarantineUsageRecorded,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def _classes() -> tuple[type[Event], ...]:
    classes: tuple[type[Event], ...] = get_args(get_args(AnyEvent)[0])
    return classes


def type_of(cls: type[Event]) -> str:
    """An event class's `type` string: its tag in the union, what a record says it is."""
    tag: str = cls.model_fields["type"].default
    return tag


EVENT_TYPES: dict[str, type[Event]] = {type_of(cls): cls for cls in _classes()}
CURRENT_VERSIONS: dict[str, int] = {
    name: cls.model_fields["schema_version"].default for name, cls in EVENT_TYPES.items()
}
if len(EVENT_TYPES) != len(_classes()):
    raise RuntimeError("two event classes share a type string")

# A message's events in the order of its life: what orders events stamped with the same
# instant (the projector's timelines). Every mail event of the union has its place.
MAIL_LIFECYCLE: tuple[str, ...] = tuple(type_of(cls) for cls in (
    MessageReceived, QuarantineAdmitted, QuarantineDenied, ScanSubmitted, ScanFailed,
    VerdictReceived, ScanTimedOut, ForcedRelease, ForcedDelete, ActionDecided,
    QuarantineReleased, BackupStored, BackupRetained, DeliveryDeferred, QueueActionRequested,
    MessageDelivered, DeliveryFailed, MessageDiscarded, NdrSent, NdrSuppressed,
    LateVerdictReceived, BackupResendRequested, BackupResent, BackupDeleteRequested,
    BackupRemoved, QuarantineHeld, QuarantineHoldEnded,
    NotificationHeld, NotificationComposed))
if set(MAIL_LIFECYCLE) != {name for name, cls in EVENT_TYPES.items()
                           if issubclass(cls, MailEvent)}:
    raise RuntimeError("MAIL_LIFECYCLE must place every mail event of the union, once")


def encode_event(event: Event) -> bytes:
    """Compact UTF-8 JSON, fields in declaration order (stable bytes for equal events)."""
    return event.model_dump_json().encode("utf-8")


def decode_event(data: bytes | str | dict[str, Any]) -> Event:
    """Decode a record (or an already-parsed dict) into the current version of its event."""
    if not isinstance(data, dict):
        # The common case, a current-version record, parsed and validated in one native pass
        # (a third faster); anything it refuses — older versions to upcast, or errors to
        # name — takes the full path below.
        try:
            fast: Event = EVENT_ADAPTER.validate_json(data)
        except ValidationError:
            pass
        else:
            return fast
    if isinstance(data, dict):
        payload: Any = data
    else:
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SchemaError(f"invalid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise SchemaError(f"an event must be a JSON object, got {type(payload).__name__}")

    event_type = payload.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise SchemaError(f"unknown event type {event_type!r}")
    version = payload.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SchemaError(f"{event_type}: invalid schema_version {version!r}")
    current = CURRENT_VERSIONS[event_type]
    if version > current:
        # A newer producer wrote this; decoding it as an older shape would lose data silently.
        raise SchemaError(
            f"{event_type} v{version} is newer than this code knows (v{current}); upgrade"
        )
    payload = upcast(payload, current)

    try:
        event: Event = EVENT_ADAPTER.validate_python(payload)
    except ValidationError as exc:
        raise SchemaError(f"{event_type} v{version}: {_describe(exc, event_type)}") from exc
    return event


def _describe(exc: ValidationError, event_type: str) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        if loc and loc[0] == event_type:  # the union's tag, not a field
            loc = loc[1:]
        field = ".".join(str(part) for part in loc) or "(event)"
        problems.append(f"field {field!r}: {error['msg']}")
    return "; ".join(problems)
