"""The notification settings as a command: who is told of what, how often, in which words.
Pure: the state, the actor, the time and the event id come in (like admin/settings.py).

Templates are named `template.<kind>.subject` and `template.<kind>.body`; the value `default`
puts the kind's default template back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from uuid import UUID

from pydantic import ValidationError

from katagate.admin import values
from katagate.admin.errors import InvalidCommand, NothingToChange
from katagate.schemas import (
    NOTICE_KINDS,
    ControlState,
    NoticeKind,
    NotificationSettings,
    NotificationSettingsChanged,
)
from katagate.schemas.notifications import (
    DEFAULT_TEMPLATES,
    NOTICE_FIELDS,
    formatted_placeholders,
    unknown_placeholders,
)

MAX_ADMINS = 20
_ADDRESS = re.compile(r"^[^\s@<>\x00-\x1f\x7f]{1,64}@[A-Za-z0-9.-]{1,189}$")
_PLACEHOLDERS = ", ".join("{" + f + "}" for f in NOTICE_FIELDS)


def addresses(field: str, value: object) -> list[str]:
    """Up to 20 mail addresses, as a list or one text separated by commas or spaces; none,
    off or empty for no address."""
    allowed = f"up to {MAX_ADMINS} mail addresses (soc@example.com), comma separated; or none"
    if value is None:
        return []
    items = re.split(r"[,\s]+", value.strip()) if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise InvalidCommand(f"{field}: must be {allowed}, got {values.shown(value)}",
                             field=field, allowed=allowed)
    found = [i for i in items if i not in ("", "none", "off")] if items != [""] else []
    if len(found) > MAX_ADMINS:
        raise InvalidCommand(f"{field}: at most {MAX_ADMINS} addresses, got {len(found)}",
                             field=field, allowed=allowed)
    for item in found:
        if not isinstance(item, str) or not _ADDRESS.fullmatch(item):
            raise InvalidCommand(f"{field}: not a mail address: {values.shown(item)}; "
                                 f"must be {allowed}", field=field, allowed=allowed)
    if len({a.casefold() for a in found}) != len(found):
        raise InvalidCommand(f"{field}: an address is given twice", field=field,
                             allowed=allowed)
    return list(found)


def template_text(field: str, value: object, part: str) -> str | None:
    """A template's subject (one line, 1..200) or body (1..8000, line breaks allowed), with
    only the known placeholders; `default` for the default template. None: the default."""
    limit = 200 if part == "subject" else 8000
    allowed = f"{'one line' if part == 'subject' else 'text'} of 1..{limit} characters; " \
              f"placeholders: {_PLACEHOLDERS}; or default"
    if isinstance(value, str) and value.strip().casefold() == "default":
        return None
    if part == "subject":
        text = values.line(field, value, limit)
    elif not isinstance(value, str) or not 1 <= len(value) <= limit or re.search(
            r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", value):
        raise InvalidCommand(f"{field}: must be {allowed}", field=field, allowed=allowed)
    else:
        text = value
    try:
        unknown = unknown_placeholders(text)
    except ValueError as exc:
        raise InvalidCommand(f"{field}: not a valid template ({exc}); {allowed}", field=field,
                             allowed=allowed) from exc
    if unknown:
        raise InvalidCommand(f"{field}: unknown placeholder"
                             f"{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join('{' + u + '}' for u in unknown)}; {allowed}",
                             field=field, allowed=allowed)
    formatted = formatted_placeholders(text)
    if formatted:  # `{subject:>999999999}` would make one value a gigabyte
        raise InvalidCommand(f"{field}: placeholder{'s' if len(formatted) > 1 else ''} "
                             f"{', '.join(formatted)} carr{'y' if len(formatted) > 1 else 'ies'}"
                             f" a format spec or conversion; write {{name}} only; {allowed}",
                             field=field, allowed=allowed)
    return text


def _switch(name: str) -> Callable[[object], object]:
    return lambda v: values.switch(name, v)


PARSERS: dict[str, Callable[[object], object]] = {
    "admin_addresses": lambda v: addresses("admin_addresses", v),
    **{name: _switch(name) for name in NotificationSettings.model_fields
       if name.startswith("notify_")},
    "digest_interval_s": lambda v: values.integer("digest_interval_s", v, 60, 86400,
                                                  "seconds"),
    "rate_limit_per_hour": lambda v: values.integer("rate_limit_per_hour", v, 0, 1000,
                                                    "notices per hour (0: digest only)"),
}
TEMPLATE_NAMES: tuple[str, ...] = tuple(f"template.{kind}.{part}" for kind in NOTICE_KINDS
                                        for part in ("subject", "body"))
SETTING_NAMES: tuple[str, ...] = (*PARSERS, *TEMPLATE_NAMES)
_KINDS: dict[str, NoticeKind] = {kind: kind for kind in NOTICE_KINDS}


def _template_name(name: str) -> tuple[NoticeKind, str]:
    _, kind, part = name.split(".")
    return _KINDS[kind], part


def validate(changes: Mapping[str, object]) -> dict[str, object]:
    """Each named setting's typed value (templates: their text, None for the default). Needs
    no state, so a front end refuses bad input before it contacts Kafka."""
    if not changes:
        raise InvalidCommand("notifications: name at least one setting to change "
                             f"({', '.join(PARSERS)}, template.<kind>.subject|body)",
                             allowed=list(SETTING_NAMES))
    typed: dict[str, object] = {}
    for name, value in changes.items():
        if name in PARSERS:
            typed[name] = PARSERS[name](value)
        elif name in TEMPLATE_NAMES:
            typed[name] = template_text(name, value, name.rsplit(".", 1)[1])
        else:
            raise InvalidCommand(f"{name}: unknown notification setting; known: "
                                 f"{', '.join(PARSERS)}, template.<kind>.subject|body with "
                                 f"kind one of {', '.join(NOTICE_KINDS)}", field=str(name),
                                 allowed=list(SETTING_NAMES))
    return typed


def _rebuild(current: NotificationSettings, typed: Mapping[str, object]) -> NotificationSettings:
    fields = {k: v for k, v in typed.items() if not k.startswith("template.")}
    templates = {kind: t.model_dump() for kind, t in current.templates.items()}
    for name, text in typed.items():
        if name.startswith("template."):
            kind, part = _template_name(name)
            default = DEFAULT_TEMPLATES[kind]
            templates[kind] = {**templates.get(kind, default.model_dump()),
                               part: getattr(default, part) if text is None else text}
    # A template equal to the default is the default: stored as nothing.
    templates = {k: t for k, t in templates.items() if t != DEFAULT_TEMPLATES[k].model_dump()}
    try:
        return NotificationSettings.model_validate(
            {**current.model_dump(), **fields, "templates": templates})
    except ValidationError as exc:  # the parsers above should make this unreachable
        first = exc.errors()[0]
        raise InvalidCommand(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


def describe(name: str, settings: NotificationSettings) -> str:
    if name.startswith("template."):
        kind, part = _template_name(name)
        text: str = getattr(settings.template(kind), part)
        marker = "" if kind in settings.templates else " (default)"
        return repr(text) + marker
    value = getattr(settings, name)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(value) or "(none)"
    return f"{value} s" if name.endswith("_s") else str(value)


def change_notifications(
    state: ControlState, changes: Mapping[str, object], *, actor: str, now: datetime,
    event_id: UUID,
) -> NotificationSettingsChanged:
    """Apply the named settings; refuse a value out of range, or a change that changes nothing."""
    producer = values.actor_ref(actor)
    typed = validate(changes)
    current = state.notifications
    new = _rebuild(current, typed)
    changed = [n for n in NotificationSettings.model_fields
               if getattr(new, n) != getattr(current, n)]
    if not changed:
        already = ", ".join(f"{n} is already {describe(n, new)}" for n in typed)
        raise NothingToChange(f"nothing to change: {already}")
    return NotificationSettingsChanged(
        event_id=event_id, occurred_at=now, producer=producer, version=state.version + 1,
        actor=actor, settings=new, changed=changed)
