"""Single-owner election through a consumer group on a one-partition topic: the member holding
the partition owns the role. Pair it with a fixed transactional.id for the role's writes, so a
new owner's producer fences an old owner that has not noticed yet.

The assignment is cooperative-sticky: an instance that joins (a restart, a deploy) leaves the
role where it is. With the eager range assignor the partition went to whichever member sorted
first, so every join could move the role, and each move pauses it for seconds."""

from __future__ import annotations

from typing import Any

from katagate.eventlog.clients import new_consumer
from katagate.eventlog.settings import KafkaSettings


class Election:
    def __init__(self, settings: KafkaSettings, role: str, topic: str, instance_id: str) -> None:
        self.owner = False
        self._consumer = new_consumer(settings, {
            "group.id": f"{settings.topic_prefix}.{role}",
            "client.id": instance_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",  # the records are not the point
            "session.timeout.ms": 6000,
            "partition.assignment.strategy": "cooperative-sticky",
            "heartbeat.interval.ms": 1000,
        })
        self._consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )

    # Cooperative callbacks are incremental: they name only what is added or taken away, and
    # one with no partitions changes nothing. The topic has one partition: the role.
    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        if partitions:
            self.owner = True

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        if partitions:
            self.owner = False

    def tick(self) -> bool:
        """Serve the group protocol (call often); return whether this member owns the role."""
        self._consumer.poll(0)
        return self.owner

    def close(self) -> None:
        self._consumer.close()
