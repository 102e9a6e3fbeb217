"""The delivery queue's administrator actions (topic `katagate.mail`).

A message whose delivery was deferred waits in apply for its next attempt. An administrator may
try it now, return it to its sender now (a DSN, as a delivery that failed for good), or delete
it. The request is the event that names them; apply carries it out and records the usual
outcome (`delivery.*`, `ndr.*`, `message.discarded`) caused by it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from katagate.schemas.envelope import MailEvent
from katagate.schemas.types import Actor, ActorNote

QueueAction = Literal["retry", "bounce", "delete"]


class QueueActionRequested(MailEvent):
    type: Literal["queue.action_requested"] = "queue.action_requested"
    schema_version: Literal[1] = 1
    action: QueueAction
    actor: Actor
    comment: Annotated[str, StringConstraints(max_length=1000)] = ""
    actor_note: ActorNote = ""
