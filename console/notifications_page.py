"""The Notifications window as plain data: the settings of `GET/PUT /api/notifications`, with
the labels and ranges `katagate notifications set` documents. Pure; the template lays it out."""

from __future__ import annotations

from dataclasses import dataclass

from katagate.console.pages import FormField
from katagate.schemas import NOTICE_KINDS, ControlState, NotificationSettings

_SWITCHES = (
    ("notify_detect", "Notify administrators of each KATA detect"),
    ("notify_late_detect", "Notify administrators of a late detect (after delivery)"),
    ("notify_skipped", "Notify administrators of messages Skipped because the quarantine was "
                       "full or KATA did not answer"),
    ("notify_quarantine_usage", "Notify administrators when the KATA Quarantine is over 90 %"),
    ("notify_connection_lost", "Notify administrators when the connection leaves Connected"),
    ("notify_recipients_deleted", "Tell recipients that a message to them was deleted"),
    ("notify_recipients_late_detect", "Tell recipients of a late detect in mail they received"),
)


@dataclass(frozen=True)
class NotificationsPage:
    fields: tuple[FormField, ...]
    templates: tuple[FormField, ...]
    version: int


def _on(value: bool) -> str:
    return "on" if value else "off"


def notifications_page(state: ControlState) -> NotificationsPage:
    s: NotificationSettings = state.notifications
    fields = (
        FormField("admin_addresses", "Administrator addresses", ", ".join(s.admin_addresses),
                  hint="up to 20, comma separated; none: nobody is told"),
        *(FormField(name, label, _on(getattr(s, name)), kind="checkbox")
          for name, label in _SWITCHES),
        FormField("digest_interval_s", "Digest interval", str(s.digest_interval_s),
                  kind="number", unit="s", hint="60..86400; default 900"),
        FormField("rate_limit_per_hour", "Single notices per hour", str(s.rate_limit_per_hour),
                  kind="number", hint="0..1000; default 20; the rest go into the digest"),
    )
    templates = tuple(
        FormField(f"template.{kind}.{part}", f"{kind.replace('_', ' ')}: {part}",
                  getattr(s.template(kind), part), kind="textarea" if part == "body" else "text")
        for kind in NOTICE_KINDS for part in ("subject", "body"))
    return NotificationsPage(fields, templates, state.version)
