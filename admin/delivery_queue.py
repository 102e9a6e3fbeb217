"""Administrator actions on the delivery queue — retry now, return to sender now (bounce),
delete — validated into events. Apply carries them out and records the usual outcome."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, get_args

from katagate.admin.errors import InvalidCommand
from katagate.admin.mail_requests import checked
from katagate.schemas import QueueAction, QueueActionRequested

ACTIONS: tuple[str, ...] = get_args(QueueAction)


def queue_action(message_id: str, action: str, actor: str, comment: str,
                 now: datetime) -> QueueActionRequested:
    if action not in ACTIONS:
        raise InvalidCommand(f"action: must be one of {', '.join(ACTIONS)}, got {action!r}",
                             field="action", allowed=list(ACTIONS))
    producer = checked(message_id, actor, comment)
    return QueueActionRequested(event_id=uuid.uuid4(), occurred_at=now, producer=producer,
                                message_id=message_id, action=action,
                                actor=actor, comment=comment)


def refuse_unless_queued(row: Mapping[str, Any] | None, message_id: str = "") -> None:
    """The queue's actions act on a message whose delivery is deferred, and nothing else: `row`
    is its row in the projector's queue (`GET /queue/messages`), None when it is not there."""
    status = row.get("status") if row is not None else None
    if status != "deferred":
        who = row.get("message_id", message_id) if row is not None else message_id
        now = f"its status is {status}" if status else "it is not in the delivery queue"
        raise InvalidCommand(f"message_id: {who} is not waiting for a retry: {now} "
                             "(see `katagate queue list`)", field="message_id",
                             allowed="a message whose delivery is deferred")
