"""Notifications: their settings (a control event) and the notices themselves (mail events).

The settings say who hears of what (administrators, and optionally a deleted or late-detected
message's recipients), how often (a rate limit, then a digest), and in which words (a subject
and body template per kind). A notice is composed by the admission part's notifier
(`decider/notifier.py`) and delivered by apply with the null sender `<>`; its `message_id` is
the notice's own id, so its delivery events are keyed, logged and retried like a message's.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from katagate.schemas.envelope import Event, MailEvent
from katagate.schemas.types import Actor, ActorNote, MessageId, Version

# What a notice can be about. `digest` gathers the occurrences the rate limit held back.
NoticeKind = Literal[
    "detect",  # KATA detected something in a message (any action)
    "late_detect",  # a detect verdict after the message was delivered or sent on
    "skipped",  # delivered unscanned: the quarantine full, or KATA off/unreachable
    "quarantine_usage",  # usage above 90 % of either quarantine limit
    "connection_lost",  # the Central Node connection left Connected
    "recipient_deleted",  # to the recipients: a message to them was deleted
    "recipient_late_detect",  # to the recipients: a message they received carries a threat
    "digest",
]
NOTICE_KINDS: tuple[NoticeKind, ...] = (
    "detect", "late_detect", "skipped", "quarantine_usage", "connection_lost",
    "recipient_deleted", "recipient_late_detect", "digest")
# The placeholders a template may use; a value a notice does not have is empty.
NOTICE_FIELDS = ("message_id", "sender", "recipients", "subject", "verdict", "detects",
                 "action", "message_id_header", "detail", "time", "count", "entries")

# An RFC 5321 mailbox as administrators type it: one @, no spaces or controls, 3..254.
MailAddress = Annotated[str, StringConstraints(pattern=r"^[^\s@<>\x00-\x1f\x7f]{1,64}@"
                                                       r"[A-Za-z0-9.-]{1,189}$")]
TemplateSubject = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,200}$")]
# A body may hold line breaks and tabs; no other control characters.
TemplateBody = Annotated[str, StringConstraints(
    pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]{1,8000}$")]


def placeholders(template: str) -> list[str]:
    """The {names} a template uses; ValueError for a malformed one (an unmatched brace)."""
    return [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]


def unknown_placeholders(template: str) -> list[str]:
    return sorted(set(placeholders(template)) - set(NOTICE_FIELDS))


def formatted_placeholders(template: str) -> list[str]:
    """The placeholders written with a format spec or a conversion (`{subject:>99}`,
    `{subject!r}`): refused, as a spec can make one value a gigabyte; only `{name}` is allowed."""
    return sorted({f"{{{n}{'!' + c if c else ''}{':' + s if s else ''}}}"
                   for _, n, s, c in string.Formatter().parse(template)
                   if n is not None and (s or c)})


class NoticeTemplate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: TemplateSubject
    body: TemplateBody

    @field_validator("subject", "body")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            unknown = unknown_placeholders(value)
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from exc
        if unknown:
            raise ValueError(f"unknown placeholders {unknown}; allowed: "
                             f"{', '.join(NOTICE_FIELDS)}")
        formatted = formatted_placeholders(value)
        if formatted:
            raise ValueError(f"placeholders {', '.join(formatted)} carry a format spec or "
                             "conversion; write {name} only")
        return value


_NAMED = ("Message {message_id}\nFrom: {sender}\nTo: {recipients}\nSubject: {subject}\n"
          "Message-ID: {message_id_header}\nVerdict: {verdict}\nDetects: {detects}\n"
          "Action: {action}\n")
DEFAULT_TEMPLATES: dict[NoticeKind, NoticeTemplate] = {
    "detect": NoticeTemplate(subject="[katagate] KATA detect in message {message_id}",
                             body="KATA detected a threat in a message.\n\n" + _NAMED),
    "late_detect": NoticeTemplate(
        subject="[katagate] Late KATA detect: message {message_id} was already sent on",
        body="KATA detected a threat in a message after it was sent on ({detail}).\n"
             "Find it by the values below and remove it from the mailboxes.\n\n" + _NAMED),
    "skipped": NoticeTemplate(subject="[katagate] Message {message_id} delivered unscanned",
                              body="A message was delivered without a KATA scan: {detail}.\n\n"
                                   + _NAMED),
    "quarantine_usage": NoticeTemplate(subject="[katagate] KATA quarantine over 90 % full",
                                       body="The KATA quarantine is over 90 % of a limit: "
                                            "{detail}.\n"),
    "connection_lost": NoticeTemplate(
        subject="[katagate] KATA Central Node connection lost",
        body="The connection to the KATA Central Node left Connected: {detail}.\n"),
    "recipient_deleted": NoticeTemplate(
        subject="A message to you was deleted",
        body="A message to you was deleted by the mail security gateway and will not be "
             "delivered.\n\nFrom: {sender}\nSubject: {subject}\nReason: {detail}\n"
             "Reference: {message_id}\n"),
    "recipient_late_detect": NoticeTemplate(
        subject="Warning: a message you received carries a threat",
        body="A message delivered to you was found to carry a threat after it was delivered. "
             "Do not open it; delete it.\n\nFrom: {sender}\nSubject: {subject}\n"
             "Message-ID: {message_id_header}\nDetects: {detects}\nReference: {message_id}\n"),
    "digest": NoticeTemplate(
        subject="[katagate] Digest: {count} notifications",
        body="More notifications came than the rate limit lets through one by one; these are "
             "{count} of them:\n\n{entries}\n"),
}


class NotificationSettings(BaseModel):
    """Who is told of what, how often and in which words; every field has its default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    admin_addresses: Annotated[list[MailAddress], Field(max_length=20)] = []
    notify_detect: bool = True
    notify_late_detect: bool = True
    notify_skipped: bool = True
    notify_quarantine_usage: bool = True
    notify_connection_lost: bool = True
    notify_recipients_deleted: bool = False
    notify_recipients_late_detect: bool = False
    # Held-back occurrences are sent together at most this often.
    digest_interval_s: Annotated[int, Field(ge=60, le=86400)] = 900
    # Single notices per sliding hour, a recipient notice (one per recipient) counting as one;
    # the rest go into the digest (0: always the digest).
    rate_limit_per_hour: Annotated[int, Field(ge=0, le=1000)] = 20
    # Templates set by an administrator; a kind not here uses DEFAULT_TEMPLATES.
    templates: dict[NoticeKind, NoticeTemplate] = {}

    def template(self, kind: NoticeKind) -> NoticeTemplate:
        return self.templates.get(kind, DEFAULT_TEMPLATES[kind])


class NotificationSettingsChanged(Event):
    """The notification settings after a change (full state, like the KATA settings)."""

    type: Literal["settings.notifications_changed"] = "settings.notifications_changed"
    schema_version: Literal[1] = 1
    version: Version
    actor: Actor
    actor_note: ActorNote = ""
    settings: NotificationSettings
    changed: Annotated[list[str], Field(min_length=1)]

    @field_validator("changed")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(NotificationSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown notification settings: {', '.join(unknown)}")
        return value

    def partition_key(self) -> str:
        return "notification-settings"


Audience = Literal["administrators", "recipients"]
NoticeLine = Annotated[str, StringConstraints(max_length=2000)]
MAX_NOTICE_BYTES = 262_144  # a composed notice, digest included, stays this small


class NotificationComposed(MailEvent):
    """A notice ready to send: `message_id` is the notice's own id, `about` the message it
    names (None for a notice about the gateway). `data` is the whole RFC 5322 message, sent by
    apply with MAIL FROM:<> to `to`; its delivery is recorded under the notice's id."""

    type: Literal["notification.composed"] = "notification.composed"
    schema_version: Literal[1] = 1
    kind: NoticeKind
    audience: Audience
    about: MessageId | None = None
    to: Annotated[list[MailAddress], Field(min_length=1, max_length=1000)]
    data: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NOTICE_BYTES)]
    # Digest only: the ids of the held-back occurrences it sends.
    covers: Annotated[list[MessageId], Field(max_length=100_000)] = Field(default_factory=list)


class NotificationHeld(MailEvent):
    """An occurrence the rate limit held back for the next digest: `message_id` is the
    occurrence's id, `line` what the digest will say of it."""

    type: Literal["notification.held"] = "notification.held"
    schema_version: Literal[1] = 1
    kind: NoticeKind
    about: MessageId | None = None
    line: NoticeLine
