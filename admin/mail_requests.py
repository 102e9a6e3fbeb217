"""What every administrator request on one message checks before it becomes an event (the
Backup's resend and delete, the delivery queue's actions): the message id, the comment, the
actor, so a refusal names the field and nothing is written."""

from __future__ import annotations

from katagate.admin.errors import InvalidCommand
from katagate.admin.quarantine import MESSAGE_ID
from katagate.admin.values import actor_ref
from katagate.schemas import ProducerRef

MAX_COMMENT = 1000  # the events' Comment field


def checked(message_id: str, actor: str, comment: str) -> ProducerRef:
    """The producer the request is recorded under, once id, actor and comment are valid."""
    if not MESSAGE_ID.fullmatch(message_id):
        raise InvalidCommand(
            f"message_id: expected 8-64 letters and digits (as in 'queued as ...'), "
            f"got {message_id!r}", field="message_id", allowed="8-64 letters and digits")
    if len(comment) > MAX_COMMENT:
        raise InvalidCommand(f"comment: at most {MAX_COMMENT} characters, got {len(comment)}",
                             field="comment", allowed=f"at most {MAX_COMMENT} characters")
    return actor_ref(actor)
