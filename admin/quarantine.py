"""Administrator commands on the KATA Quarantine — "Send now" and "Delete", on one message or a
selection — validated into events, and the list of messages waiting there, folded from the
ledger."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from katagate.admin.errors import InvalidCommand, NotFound
from katagate.schemas import (
    Event,
    ForcedDelete,
    ForcedRelease,
    ProducerRef,
    QuarantineAdmitted,
    QuarantineHeld,
    QuarantineHoldEnded,
    QuarantineReleased,
)

MESSAGE_ID = re.compile(r"^[A-Za-z0-9]{8,64}$")


def _checked(message_id: str, comment: str) -> None:
    if not MESSAGE_ID.fullmatch(message_id):
        raise InvalidCommand(
            f"message_id: expected 8-64 letters and digits (as in 'queued as ...'), "
            f"got {message_id!r}"
        )
    if len(comment) > 1000:
        raise InvalidCommand(f"comment: at most 1000 characters, got {len(comment)}")


def _by(actor: str) -> ProducerRef:
    return ProducerRef(stage="admin", instance=(actor or "admin")[:128])


def forced_release(message_id: str, actor: str, comment: str, now: datetime) -> ForcedRelease:
    """Send a message on without waiting for its verdict; the scan goes on and its verdict is
    recorded when it comes."""
    _checked(message_id, comment)
    return ForcedRelease(event_id=uuid.uuid4(), occurred_at=now, producer=_by(actor),
                         message_id=message_id, actor=actor or "admin", comment=comment)


def forced_delete(message_id: str, actor: str, comment: str, now: datetime) -> ForcedDelete:
    """Delete a message waiting for its verdict: it is discarded, never delivered."""
    _checked(message_id, comment)
    return ForcedDelete(event_id=uuid.uuid4(), occurred_at=now, producer=_by(actor),
                        message_id=message_id, actor=actor or "admin", comment=comment)


@dataclass(frozen=True)
class Waiting:
    message_id: str
    size: int
    rule_id: str | None
    admitted_at: datetime
    deadline_at: datetime  # when the response timeout sends it on without a verdict


Held = dict[str, Waiting]


def evolve_waiting(held: Held, event: Event) -> Held:
    """Fold of `katagate.quarantine` read in order (each ledger event is there once)."""
    match event:
        # A held message waiting outside the full quarantine (on_unavailable = hold) can be
        # sent on or deleted too; its deadline is the hold's until it is admitted.
        case QuarantineAdmitted() | QuarantineHeld():
            held[event.message_id] = Waiting(event.message_id, event.size, event.rule_id,
                                             event.occurred_at, event.deadline_at)
        case QuarantineReleased() | QuarantineHoldEnded():
            held.pop(event.message_id, None)
    return held


def waiting(ledger: Iterable[Event]) -> list[Waiting]:
    """The messages in the KATA Quarantine after `ledger`, oldest first."""
    held: Held = {}
    for event in ledger:
        evolve_waiting(held, event)
    return oldest_first(held)


def oldest_first(held: Held) -> list[Waiting]:
    return sorted(held.values(), key=lambda w: (w.admitted_at, w.message_id))


def refuse_unless_waiting(held: Held, message_id: str) -> None:
    """Send now and Delete act on messages waiting for a verdict, and nothing else."""
    if message_id not in held:
        raise InvalidCommand(f"message_id: {message_id} is not waiting in the KATA Quarantine "
                             "(see `katagate quarantine list`)")


Command = Callable[[str, str, str, datetime], Event]
COMMANDS: dict[str, Command] = {"send-now": forced_release, "delete": forced_delete}
MAX_SELECTION = 1000  # a page of the list at most; one transaction


def command(what: str, message_id: str, actor: str, comment: str, now: datetime) -> Event:
    """The event for Send now or Delete; InvalidCommand for a malformed id or comment."""
    return COMMANDS[what](message_id, actor, comment, now)


def selection(what: str, message_ids: list[str], actor: str, comment: str, now: datetime,
              waiting: Callable[[], Iterable[str]]) -> list[Event]:
    """The events for Send now or Delete on a selection, all or none: InvalidCommand for an
    unknown action, an empty or too long selection or a malformed id; NotFound naming every id
    not waiting (any more), asking `waiting` (the ids waiting) only once the request is
    well-formed. Each id is acted on once. The console and `katagate quarantine` share it."""
    if what not in COMMANDS:
        raise InvalidCommand(f"action: {what[:40]!r} is not one of send-now, delete",
                             field="action", allowed=list(COMMANDS))
    ids = list(dict.fromkeys(message_ids))
    if not 1 <= len(ids) <= MAX_SELECTION:
        raise InvalidCommand(f"message_ids: select 1..{MAX_SELECTION} messages, got {len(ids)}",
                             allowed=f"1..{MAX_SELECTION} message ids")
    events = []
    for message_id in ids:
        try:
            events.append(command(what, message_id, actor, comment, now))
        except InvalidCommand as exc:
            if exc.field != "message_id":
                raise  # the comment
            raise InvalidCommand(f"message_ids: {str(exc).removeprefix('message_id: ')}",
                                 allowed="8-64 letters and digits") from exc
    held = set(waiting())
    gone = [m for m in ids if m not in held]
    if gone:
        raise NotFound(f"message_ids: not waiting in the KATA Quarantine: {', '.join(gone[:20])}"
                       + (f" and {len(gone) - 20} more" if len(gone) > 20 else "")
                       + "; nothing was done")
    return events
