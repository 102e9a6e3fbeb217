"""Send now and Delete for messages waiting in the KATA Quarantine, one or a selection: the
admin commands' events (ForcedRelease, ForcedDelete) written to the message's partition of
`katagate.mail`, where the decider acts on them. Only messages the projector lists as waiting
are acted on. The console's other administrator requests (Backup resend and delete, the
delivery queue's actions) go to `katagate.mail` through the same writer."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from katagate.admin.quarantine import Waiting, refuse_unless_waiting
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import Event


def held(listed: list[dict[str, Any]]) -> dict[str, Waiting]:
    """The projector's listing as the admin commands' fold has it."""
    return {m["message_id"]: Waiting(
        m["message_id"], int(m["size"]), m.get("rule_id"),
        datetime.fromisoformat(m["admitted_at"]), datetime.fromisoformat(m["deadline_at"]),
    ) for m in listed}


def require_waiting(listed: list[dict[str, Any]], message_id: str) -> None:
    """InvalidCommand unless the message is waiting for its verdict."""
    refuse_unless_waiting(held(listed), message_id)


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

