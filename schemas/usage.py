"""The KATA Quarantine's usage against its limits (`katagate.quarantine.usage`): all that
ingest needs of the ledger to answer `451 4.7.0` "quarantine full" under on_unavailable =
tempfail. The ledger topic itself holds Backup copies' locations and sha256 and notices'
texts, which the internet-facing stage must not read (docs/SECURITY.md).

The admission, the ledger's single writer, writes one after each change of the usage, in the
transaction of the ledger events that changed it, and at its election; the topic is compacted
on the one key "usage", so its newest record is the usage.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeInt

from katagate.schemas.envelope import Event
from katagate.schemas.types import MessageCountLimit

USAGE_KEY = "usage"


class QuarantineUsageRecorded(Event):
    """The usage after the ledger's newest change, and the limits in force when it was written
    (ingest compares with the limits of the configuration it reads itself)."""

    type: Literal["quarantine.usage_recorded"] = "quarantine.usage_recorded"
    schema_version: Literal[1] = 1
    bytes_in_use: NonNegativeInt
    messages_in_use: NonNegativeInt
    limit_bytes: Annotated[int, Field(ge=1)]
    limit_messages: MessageCountLimit
    waiting: NonNegativeInt  # held messages waiting for room (on_unavailable = hold)

    def partition_key(self) -> str:
        return USAGE_KEY
