"""Which events an effect's outcome produces, pure: parcel + outcome + now → events.

Apply's shell (`decider/apply.py`) performs the effects (reads the raw message, writes the
Backup copy, speaks SMTP) and asks this module what to record. Every recorded effect has one id
per (message, effect), so a redelivered decision records the same events again, never new ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from katagate.decider.parcels import Parcel
from katagate.decider.smtp_out import DeliveryOutcome
from katagate.schemas import (
    BackupStored,
    DeliveryDeferred,
    DeliveryFailed,
    Event,
    MessageDelivered,
    MessageDiscarded,
    NdrSent,
    NdrSuppressed,
    ProducerRef,
    RawLocation,
)
from katagate.schemas.ids import EFFECTS, step_id

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
MAX_REPLY = 1000  # the events' SmtpReply limit


@dataclass(frozen=True)
class Effects:
    """What every effect event of one decider instance carries, and its retry schedule."""

    producer: ProducerRef
    next_hop: str
    retry_first: timedelta
    retry_period: timedelta  # give up this long after the first attempt
    # What caused the effects when not the decision: an administrator's queue action.
    cause: uuid.UUID | None = None

    def common(self, parcel: Parcel, effect: str, now: datetime) -> dict[str, Any]:
        decision = parcel.decision
        return {
            "event_id": step_id(EFFECTS, parcel.message_id, effect), "occurred_at": now,
            "producer": self.producer, "message_id": parcel.message_id,
            "correlation_id": parcel.correlation_id,
            "causation_id": self.cause or (decision.event_id if decision is not None else None),
        }

    def caused_by(self, request: uuid.UUID) -> Effects:
        return replace(self, cause=request)


@dataclass(frozen=True)
class Bounce:
    """A delivery status notification the sender is owed (RFC 5321 section 6.1)."""

    recipients: list[str]
    diagnostic: str


@dataclass(frozen=True)
class Recorded:
    events: list[Event]
    bounce: Bounce | None = None  # sent by the shell; `ndr_sent` records it if accepted


def next_retry(attempt: int, first_attempt_at: datetime, now: datetime,
               give_up_after: timedelta, first: timedelta = FIRST_RETRY) -> datetime | None:
    """When to try again after failed attempt number `attempt` (1-based), or None: give up.

    Waits `first` (30 s) after the first attempt, doubling each time up to 1 h; never later than
    `first_attempt_at + give_up_after` (so the last try falls on the deadline); None once `now`
    has reached that deadline.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    deadline = first_attempt_at + give_up_after
    if now >= deadline:
        return None
    delay = MAX_RETRY if attempt > 24 else min(first * 2 ** (attempt - 1), MAX_RETRY)
    return min(now + delay, deadline)


def raw_unavailable(fx: Effects, parcel: Parcel, reason: str, now: datetime) -> DeliveryFailed:
    return DeliveryFailed(**fx.common(parcel, "failed", now), next_hop=fx.next_hop,
                          attempts=max(1, parcel.attempts),
                          reply=f"raw message unavailable: {reason}"[:MAX_REPLY],
                          recipients=list(parcel.recipients))


def backup_stored(fx: Effects, parcel: Parcel, location: RawLocation, sha256: str,
                  now: datetime) -> BackupStored:
    return BackupStored(**fx.common(parcel, "backup", now), location=location, sha256=sha256)


def discarded(fx: Effects, parcel: Parcel, now: datetime) -> MessageDiscarded:
    decision = parcel.decision
    by_admin = decision is not None and decision.reason == "deleted_by_admin"
    return MessageDiscarded(**fx.common(parcel, "discarded", now),
                            reason="deleted_by_admin" if by_admin else "kata_delete")


def deleted_by_admin(fx: Effects, parcel: Parcel, now: datetime) -> MessageDiscarded:
    """A deferred message an administrator deleted from the delivery queue."""
    return MessageDiscarded(**fx.common(parcel, "discarded", now), reason="deleted_by_admin")


def returned_by_admin(fx: Effects, parcel: Parcel, actor: str, now: datetime) -> Recorded:
    """A deferred message an administrator returned to its sender: failed for good now, with
    the DSN a delivery that fails owes."""
    reply = f"returned to the sender by the administrator {actor}"
    return failed(fx, parcel, reply, list(parcel.recipients), max(1, parcel.attempts), now)


def ndr_suppressed(fx: Effects, parcel: Parcel, why: str, now: datetime) -> NdrSuppressed:
    return NdrSuppressed(**fx.common(parcel, "ndr", now), reason=why)


def ndr_sent(fx: Effects, parcel: Parcel, effect: str, dsn_id: str, reason: str,
             now: datetime) -> NdrSent:
    """`effect` "ndr" for the Reject action's NDR, "dsn" for a failed delivery's DSN."""
    return NdrSent(**fx.common(parcel, effect, now), to=parcel.envelope_from,
                   dsn_message_id=dsn_id, reason=reason)


def failed(fx: Effects, parcel: Parcel, reply: str, recipients: list[str], attempt: int,
           now: datetime) -> Recorded:
    """Failed for good; a message that was to be delivered owes its sender a DSN."""
    recipients = recipients or list(parcel.recipients)
    event = DeliveryFailed(**fx.common(parcel, "failed", now), next_hop=fx.next_hop,
                           attempts=attempt, reply=reply[:MAX_REPLY], recipients=recipients)
    decision = parcel.decision
    owed = decision is not None and decision.action == "deliver"
    return Recorded([event], Bounce(recipients, reply) if owed else None)


def deferred_or_failed(fx: Effects, parcel: Parcel, reply: str, recipients: list[str],
                       now: datetime) -> Recorded:
    """A temporary failure: try again on the schedule, or fail once it has run out."""
    attempt = parcel.attempts + 1
    retry_at = next_retry(attempt, parcel.first_attempt_at or now, now, fx.retry_period,
                          first=fx.retry_first)
    if retry_at is None:
        return failed(fx, parcel, reply, recipients, attempt, now)
    return Recorded([DeliveryDeferred(**fx.common(parcel, f"deferred-{attempt}", now),
                                      next_hop=fx.next_hop, attempt=attempt,
                                      reply=reply[:MAX_REPLY], retry_at=retry_at)])


def after_delivery(fx: Effects, parcel: Parcel, outcome: DeliveryOutcome, tagged: bool,
                   now: datetime) -> Recorded:
    """The message's delivery attempt to the next hop."""
    recipients = list(parcel.recipients)
    if outcome.kind == "deferred":
        return deferred_or_failed(fx, parcel, outcome.reply, recipients, now)
    if outcome.kind == "failed":
        return failed(fx, parcel, outcome.reply, recipients, parcel.attempts + 1, now)
    accepted = outcome.delivered_to
    delivered = MessageDelivered(
        **fx.common(parcel, "delivered", now), next_hop=fx.next_hop,
        recipients=accepted or recipients, reply=outcome.reply[:MAX_REPLY], tagged=tagged,
        attempts=parcel.attempts + 1,
    )
    # Recipients the next hop refused while taking the message for others: their sender hears
    # of it now. (Temporarily refused ones are not retried on their own: that needs
    # per-recipient delivery state; a stated limit.)
    refused = [r for r in recipients if r not in accepted]
    if not refused:
        return Recorded([delivered])
    # Each refused recipient with its own RCPT reply: the DSN's status is the first one's.
    replies = {r.recipient: r.reply for r in outcome.recipients}
    said = "; ".join(f"{r}: {replies.get(r, outcome.reply)}" for r in refused)
    return Recorded([delivered], Bounce(refused, f"refused by the next hop: {said}"))


def after_ndr(fx: Effects, parcel: Parcel, outcome: DeliveryOutcome, dsn_id: str,
              now: datetime) -> Recorded:
    """The Reject action's NDR, sent to the envelope sender."""
    if outcome.kind == "delivered":
        return Recorded([ndr_sent(fx, parcel, "ndr", dsn_id, "kata_reject", now)])
    if outcome.kind == "deferred":
        return deferred_or_failed(fx, parcel, outcome.reply, [parcel.envelope_from], now)
    return failed(fx, parcel, outcome.reply, [parcel.envelope_from], parcel.attempts + 1, now)


def status_of(reply: str) -> str:
    """The enhanced status code in a reply (5.1.1 …) as a permanent one, else 5.0.0."""
    for word in reply.split():
        parts = word.split(".")
        if len(parts) == 3 and parts[0] in ("4", "5") and all(p.isdigit() for p in parts):
            return "5" + word[1:]
    return "5.0.0"
