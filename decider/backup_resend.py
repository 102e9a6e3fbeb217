"""A Backup copy released by an administrator, pure: the mark it carries and what is recorded.

The mark is one header prepended to the copy's bytes (as `subject_tag` does: the message is
never re-serialised), `X-Katagate-Released-From-Backup: <message_id>; by=<actor>; at=<date>`,
so the recipient's side can tell a released copy from the original delivery. A mark that
mail arrives with is renamed on every delivery (`disarm_marks`): only apply writes the mark.

One attempt per request: a resend the next hop defers is recorded as `deferred` and not tried
again by apply; the administrator resends again (a new request) when the next hop is back.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime

from katagate.decider.outcomes import MAX_REPLY, Effects
from katagate.decider.smtp_out import DeliveryOutcome
from katagate.schemas import BackupResendRequested, BackupResent
from katagate.schemas.ids import EFFECTS, step_id
from katagate.schemas.raw_mail import HEADER_SCAN_LIMIT, header_end

HEADER = b"X-Katagate-Released-From-Backup"
# What a mark found on received mail becomes: kept for the record, no longer the mark.
RECEIVED_MARK = b"X-Katagate-Received-Release-Mark"
_MARK = re.compile(rb"(?im)^" + re.escape(HEADER) + rb"(?=[ \t]*:)")
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


def disarm_marks(data: bytes) -> bytes:
    """The message with every release mark it arrived with renamed to `RECEIVED_MARK`, so the
    one a recipient sees was written by apply: anyone may put the header on mail they send, to
    pass it off as a copy an administrator checked and released. Only the header section is
    looked at (its first HEADER_SCAN_LIMIT bytes); the rest is kept byte for byte."""
    end = header_end(data, HEADER_SCAN_LIMIT)
    end = min(len(data), HEADER_SCAN_LIMIT) if end is None else end
    if _MARK.search(data, 0, end) is None:
        return data  # the usual case: no copy of a large message
    return _MARK.sub(RECEIVED_MARK, data[:end]) + data[end:]


def mark_released(data: bytes, message_id: str, actor: str, at: datetime) -> bytes:
    """The copy with the release header in front, ended as the message's first line is (any
    mark the copy arrived with disarmed)."""
    first_end = data.find(b"\n")
    newline = b"\n" if first_end > 0 and data[first_end - 1:first_end] != b"\r" else b"\r\n"
    return released_header(message_id, actor, at) + newline + disarm_marks(data)


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
