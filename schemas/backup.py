"""Backup events (topic `katagate.mail`; the Backup ledger's also on `katagate.quarantine`).

Apply writes a copy (`backup.stored`, in `mail.py`). The quarantine's single writer keeps the
Backup ledger beside the quarantine's: each copy retained, each copy removed (expired by age
or by total size, or deleted by an administrator), with the Backup's usage after the event, so
its usage is rebuilt from the log alone. Administrators ask for a resend or a deletion with a
request event that names them; apply records what the resend did.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeInt, StringConstraints

from katagate.schemas.envelope import MailEvent
from katagate.schemas.types import (
    Actor,
    ActorNote,
    Address,
    BackupMaxAgeDays,
    HostPort,
    RawLocation,
    Sha256Hex,
    UtcDatetime,
)

SmtpReply = Annotated[str, StringConstraints(max_length=1000)]
Recipients = Annotated[list[Address], Field(min_length=1, max_length=1000)]
Comment = Annotated[str, StringConstraints(max_length=1000)]
RemovalCause = Literal["expired_age", "expired_size", "deleted_by_admin"]


class BackupLedgerEvent(MailEvent):
    """An entry of the Backup ledger: the copy's size and the Backup's usage after it."""

    size: NonNegativeInt
    bytes_in_use: NonNegativeInt
    copies_in_use: NonNegativeInt


class BackupRetained(BackupLedgerEvent):
    """The ledger took a stored copy in; it is kept until `expires_at` or until the Backup is
    over `limit_bytes`, oldest first."""

    type: Literal["backup.retained"] = "backup.retained"
    schema_version: Literal[1] = 1
    stored_at: UtcDatetime  # the `backup.stored` event's instant
    location: RawLocation
    sha256: Sha256Hex
    max_age_days: BackupMaxAgeDays
    expires_at: UtcDatetime
    limit_bytes: Annotated[int, Field(ge=1)]


class BackupRemoved(BackupLedgerEvent):
    """A copy left the Backup: it can no longer be read, resent or downloaded."""

    type: Literal["backup.removed"] = "backup.removed"
    schema_version: Literal[1] = 1
    cause: RemovalCause
    actor: Actor | None = None  # the administrator, for deleted_by_admin
    max_age_days: BackupMaxAgeDays
    limit_bytes: Annotated[int, Field(ge=1)]


class BackupDeleteRequested(MailEvent):
    """An administrator deleted a Backup copy (console, API or `katagate backup delete`)."""

    type: Literal["backup.delete_requested"] = "backup.delete_requested"
    schema_version: Literal[1] = 1
    actor: Actor
    comment: Comment = ""
    actor_note: ActorNote = ""


class BackupResendRequested(MailEvent):
    """An administrator released a Backup copy: send it to `recipients` through the delivery
    path, marked as released from Backup. The copy's place and digest come with the request,
    so apply needs no memory of a message it finished long ago."""

    type: Literal["backup.resend_requested"] = "backup.resend_requested"
    schema_version: Literal[1] = 1
    actor: Actor
    comment: Comment = ""
    actor_note: ActorNote = ""
    envelope_from: Annotated[str, StringConstraints(max_length=256)]  # the original's; "" is <>
    recipients: Recipients
    to_original: bool  # the original recipients, or addresses the administrator gave
    location: RawLocation
    sha256: Sha256Hex


class BackupResent(MailEvent):
    """What apply did with a resend request (its `causation_id`): the next hop's answer."""

    type: Literal["backup.resent"] = "backup.resent"
    schema_version: Literal[1] = 1
    outcome: Literal["delivered", "deferred", "failed", "unavailable"]
    next_hop: HostPort
    recipients: Recipients  # accepted ones when delivered, else those asked for
    reply: SmtpReply
