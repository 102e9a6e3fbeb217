"""The envelope every event carries, and the base class of all events.

Subclasses pin `type` and `schema_version` with Literal defaults: the pair is the stable name a
record is decoded by (never a Python qualname), so classes can be renamed or moved freely.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, field_validator

from katagate.schemas.types import MessageId, ProducerRef, UtcDatetime


class Event(BaseModel):
    """Base of every event. Ids and times are inputs: nothing here calls uuid4() or the clock."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    schema_version: int
    event_id: UUID
    occurred_at: UtcDatetime
    # The first event of a flow (usually MessageReceived or the admin command's event).
    correlation_id: UUID | None = None
    # The event this one reacts to; None for events caused by the outside world.
    causation_id: UUID | None = None
    producer: ProducerRef

    @field_validator("schema_version", mode="before")
    @classmethod
    def _an_integer(cls, value: Any) -> Any:
        # The literal would take `true` or `1.0` for 1: a version is written as an integer.
        if type(value) is not int:
            raise ValueError(f"must be an integer, got {value!r}")
        return value

    def partition_key(self) -> str:
        """The Kafka record key: events with the same key keep their order."""
        raise NotImplementedError(f"{type(self).__name__} defines no partition key")


class MailEvent(Event):
    """An event in one message's lifecycle, keyed by its message id."""

    message_id: MessageId

    def partition_key(self) -> str:
        return self.message_id
