"""Administrator requests on a Backup copy — resend it, delete it — validated into events.

The requester reads the copy's row from the projector (`GET /backup/copies/{id}`) and the
request carries what apply needs from it (where the copy lies, its digest, the original
sender and recipients), so apply keeps no memory of messages it finished long ago.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from katagate.admin.errors import InvalidCommand
from katagate.admin.mail_requests import checked
from katagate.schemas import BackupDeleteRequested, BackupResendRequested
from katagate.schemas.types import RawLocation

MAX_RECIPIENTS = 100
# An address as SMTP carries it (RFC 5321 4.1.2, 4.5.3.1): a local part of printable ASCII
# without spaces, brackets or commas, and a domain of letters, digits and hyphens.
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
ADDRESS_RULE = "user@domain, at most 254 characters, no spaces or brackets"


def address(field: str, value: object) -> str:
    """One recipient address the administrator typed, or InvalidCommand naming `field`."""
    text = value if isinstance(value, str) else ""
    local, at, domain = text.rpartition("@")
    labels = domain.split(".")
    if (not at or len(text) > 254 or not _LOCAL.fullmatch(local) or len(labels) < 2
            or not all(_LABEL.fullmatch(label) for label in labels)):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise InvalidCommand(f"{field}: not an address ({ADDRESS_RULE}), got {shown}",
                             field=field, allowed=ADDRESS_RULE)
    return text


def recipients(to: list[str]) -> list[str]:
    """1..100 valid addresses, duplicates (case-insensitive) removed, order kept."""
    if not 1 <= len(to) <= MAX_RECIPIENTS:
        raise InvalidCommand(f"to: 1..{MAX_RECIPIENTS} addresses, got {len(to)}", field="to",
                             allowed=f"1..{MAX_RECIPIENTS} addresses ({ADDRESS_RULE})")
    seen: dict[str, str] = {}
    for value in to:
        seen.setdefault(address("to", value).casefold(), value)
    return list(seen.values())


def refuse_unless_held(copy_row: Mapping[str, Any]) -> None:
    """Resend and delete act on copies still in the Backup, and nothing else."""
    message_id = copy_row.get("message_id")
    backup = copy_row.get("backup")
    state = backup.get("state") if isinstance(backup, Mapping) else None
    if state != "held" or copy_row.get("removed"):
        why = (f"it was removed ({backup.get('cause')})" if state == "removed"
               and isinstance(backup, Mapping) else "it has no copy there")
        raise InvalidCommand(
            f"message_id: {message_id} is not held in the Backup: {why} "
            "(see `katagate backup list`)", field="message_id", allowed="a copy held in the Backup")


@dataclass(frozen=True)
class CopyFacts:
    envelope_from: str  # "" is the null sender
    recipients: list[str]
    location: RawLocation
    sha256: str


def copy_facts(copy_row: Mapping[str, Any]) -> CopyFacts:
    """The original sender and recipients, the copy's place and digest, from the row."""
    sender = copy_row.get("envelope_from")
    original = copy_row.get("recipients")
    sha256 = copy_row.get("sha256")
    try:
        location = RawLocation.model_validate(copy_row.get("location"))
    except ValidationError:
        location = None
    if (not isinstance(sender, str) or not isinstance(original, list) or not original
            or location is None or not isinstance(sha256, str) or not _SHA256.fullmatch(sha256)):
        raise InvalidCommand(f"message_id: the Backup row of {copy_row.get('message_id')} "
                             "lacks the copy's sender, recipients, location or sha256",
                             field="message_id", allowed="a copy held in the Backup")
    return CopyFacts("" if sender == "<>" else sender, [str(r) for r in original], location,
                     sha256)


def resend_request(copy_row: Mapping[str, Any], actor: str, comment: str,
                   to: list[str] | None, now: datetime) -> BackupResendRequested:
    """Send the copy again: to its original recipients (`to` None) or to the addresses given."""
    message_id = str(copy_row.get("message_id", ""))
    producer = checked(message_id, actor, comment)
    refuse_unless_held(copy_row)
    facts = copy_facts(copy_row)
    return BackupResendRequested(
        event_id=uuid.uuid4(), occurred_at=now, producer=producer, message_id=message_id,
        actor=actor, comment=comment, envelope_from=facts.envelope_from,
        recipients=facts.recipients if to is None else recipients(to), to_original=to is None,
        location=facts.location, sha256=facts.sha256)


def delete_request(message_id: str, actor: str, comment: str,
                   now: datetime) -> BackupDeleteRequested:
    """Remove a copy from the Backup now (the ledger records it as deleted_by_admin)."""
    producer = checked(message_id, actor, comment)
    return BackupDeleteRequested(event_id=uuid.uuid4(), occurred_at=now, producer=producer,
                                 message_id=message_id, actor=actor, comment=comment)
