"""Administrator commands on the KATA quarantine, validated into events."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from admin.central_node import InvalidCommand
from schemas import ForcedRelease, ProducerRef

MESSAGE_ID = re.compile(r"^[A-Za-z0-9]{8,64}$")


def forced_release(message_id: str, actor: str, comment: str, now: datetime) -> ForcedRelease:
    """Send a message on without waiting for its verdict; the scan goes on and its verdict is
    recorded when it comes."""
    if not MESSAGE_ID.fullmatch(message_id):
        raise InvalidCommand(
            f"message_id: expected 8-64 letters and digits (as in 'queued as ...'), "
            f"got {message_id!r}"
        )
    if len(comment) > 1000:
        raise InvalidCommand(f"comment: at most 1000 characters, got {len(comment)}")
    return ForcedRelease(
        event_id=uuid.uuid4(), occurred_at=now,
        producer=ProducerRef(stage="admin", instance=(actor or "admin")[:128]),
        message_id=message_id, actor=actor or "admin", comment=comment,
    )
