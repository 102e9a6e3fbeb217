"""A Backup copy released by an administrator, pure: the mark it carries and what is recorded.

The mark is one header prepended to the copy's bytes (as `subject_tag` does: the message is
never re-serialised), `X-Katagate-Released-From-Backup: <message_id>; by=<actor>; at=<date>`,
so the recipient's side can tell a released copy from the original delivery.

One attempt per request: a resend the next hop defers is recorded as `deferred` and not tried
again by apply; the administrator resends again (a new request) when the next hop is back.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime

from decider.outcomes import MAX_REPLY, Effects
from decider.smtp_out import DeliveryOutcome
from schemas import BackupResendRequested, BackupResent
from schemas.ids import EFFECTS, step_id

HEADER = b"X-Katagate-Released-From-Backup"
_TOKEN = re.compile(r"^[A-Za-z0-9._:@+-]+$")


def _actor_value(actor: str) -> str:
    """The actor as a header value: a token as is, else a quoted string in ASCII."""
    if _TOKEN.match(actor):
        return actor
    escaped = actor.encode("ascii", "backslashreplace").decode("ascii")
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def released_header(message_id: str, actor: str, at: datetime) -> bytes:
    value = f"{message_id}; by={_actor_value(actor)}; at={format_datetime(at)}"
    return HEADER + b": " + value.encode("ascii")


def mark_released(data: bytes, message_id: str, actor: str, at: datetime) -> bytes:
    """The copy with the release header in front, ended as the message's first line is."""
    first_end = data.find(b"\n")
    newline = b"\n" if first_end > 0 and data[first_end - 1:first_end] != b"\r" else b"\r\n"
    return released_header(message_id, actor, at) + newline + data


def location_problem(request: BackupResendRequested, backup_topic: str) -> str | None:
    """Why the request's location cannot be a Backup copy (None: it can be)."""
    if request.location.topic != backup_topic:
        return f"the location names topic {request.location.topic}, not the Backup"
    return None


def resent(fx: Effects, request: BackupResendRequested, outcome: DeliveryOutcome | None,
           reply: str, now: datetime) -> BackupResent:
    """What one attempt did; `outcome` None: the copy could not be read (`unavailable`)."""
    asked = list(request.recipients)
    if outcome is None:
        kind = "unavailable"
        recipients = asked
    else:
        kind = outcome.kind
        recipients = outcome.delivered_to or asked
        reply = outcome.reply
    return BackupResent(
        event_id=step_id(EFFECTS, request.message_id, f"resent-{request.event_id}"),
        occurred_at=now, producer=fx.producer, message_id=request.message_id,
        correlation_id=request.correlation_id, causation_id=request.event_id,
        outcome=kind, next_hop=fx.next_hop, recipients=recipients, reply=reply[:MAX_REPLY],
    )
