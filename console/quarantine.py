"""Send now and Delete for messages waiting in the KATA Quarantine, one or a selection: the
admin commands' events (ForcedRelease, ForcedDelete) written to the message's partition of
`katagate.mail`, where the decider acts on them. Only messages the projector lists as waiting
are acted on. The console's other administrator requests (Backup resend and delete, the
delivery queue's actions) go to `katagate.mail` through the same writer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from admin.errors import InvalidCommand, NotFound
from admin.quarantine import Waiting, forced_delete, forced_release, refuse_unless_waiting
from eventlog.principals import PRINCIPALS
from eventlog.producer import TransactionalProducer
from eventlog.records import Outgoing
from eventlog.settings import KafkaSettings
from eventlog.topics import TopicNames
from schemas import Event

Command = Callable[[str, str, str, datetime], Event]
COMMANDS: dict[str, Command] = {"send-now": forced_release, "delete": forced_delete}
MAX_SELECTION = 1000  # a page of the list at most


def held(listed: list[dict[str, Any]]) -> dict[str, Waiting]:
    """The projector's listing as the admin commands' fold has it."""
    return {m["message_id"]: Waiting(
        m["message_id"], int(m["size"]), m.get("rule_id"),
        datetime.fromisoformat(m["admitted_at"]), datetime.fromisoformat(m["deadline_at"]),
    ) for m in listed}


def command(what: str, message_id: str, actor: str, comment: str, now: datetime) -> Event:
    """The event for Send now or Delete; InvalidCommand for a malformed id or comment."""
    return COMMANDS[what](message_id, actor, comment, now)


def require_waiting(listed: list[dict[str, Any]], message_id: str) -> None:
    """InvalidCommand unless the message is waiting for its verdict."""
    refuse_unless_waiting(held(listed), message_id)


def selection(what: str, message_ids: list[str], actor: str, comment: str, now: datetime,
              listed: Callable[[], list[dict[str, Any]]]) -> list[Event]:
    """The events for Send now or Delete on a selection, all or none: InvalidCommand for an
    unknown action, an empty or too long selection or a malformed id; NotFound naming every id
    not waiting (any more), asking `listed` only once the request is well-formed. Each id is
    acted on once."""
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
    waiting = {m["message_id"] for m in listed()}
    gone = [m for m in ids if m not in waiting]
    if gone:
        raise NotFound(f"message_ids: not waiting in the KATA Quarantine: {', '.join(gone[:20])}"
                       + (f" and {len(gone) - 20} more" if len(gone) > 20 else "")
                       + "; nothing was done")
    return events


class QuarantineWriter:
    """One transactional producer for the console's writes to `katagate.mail`, one at a time;
    the events of one call are written in one transaction (all or none)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._topic = TopicNames(kafka.topic_prefix).mail
        self._producer: TransactionalProducer | None = None
        self._lock = threading.Lock()

    def write(self, *events: Event) -> None:
        with self._lock:
            if self._producer is None:
                self._producer = TransactionalProducer(
                    self._kafka, PRINCIPALS["console"].transactional_id(
                        self._kafka.topic_prefix, "console-quarantine"))
            try:
                self._producer.begin()
                self._producer.produce([Outgoing.event(self._topic, e) for e in events])
                self._producer.commit()
            except BaseException:
                # After a failed transaction only a new producer is safe (eventlog.producer).
                self._producer.close()
                self._producer = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None

