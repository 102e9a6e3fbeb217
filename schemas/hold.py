"""The quarantine's waiting list (`on_unavailable` = hold): ledger events on
`katagate.quarantine`, mirrored to the message's `katagate.mail` partition like the others.

A held message waits outside the KATA Quarantine while it is full; it does not count against
the limits until it is admitted (`quarantine.admitted`, oldest first, as room frees up) or its
hold ends without admission (`quarantine.hold_ended`: the hold's response timeout, or an
administrator). The waiting list is rebuilt from these events alone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Self

from pydantic import Field, NonNegativeInt, model_validator

from katagate.schemas.mail import LedgerEvent
from katagate.schemas.types import MessageCountLimit, ResponseTimeout, RuleId, UtcDatetime

# Why a message waits: the quarantine's limit it would go over.
HoldReason = Literal["size_limit", "count_limit"]


class QuarantineHeld(LedgerEvent):
    """The message waits for room in the KATA Quarantine. Usage is unchanged by it."""

    type: Literal["quarantine.held"] = "quarantine.held"
    schema_version: Literal[1] = 1
    reason: HoldReason
    rule_id: RuleId | None
    settings_version: NonNegativeInt
    response_timeout_s: ResponseTimeout
    deadline_at: UtcDatetime  # the hold ends here unless the message was admitted before
    limit_bytes: Annotated[int, Field(ge=1)]
    limit_messages: MessageCountLimit
    waiting: Annotated[int, Field(ge=1)]  # messages waiting, this one included

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.deadline_at != self.occurred_at + timedelta(seconds=self.response_timeout_s):
            raise ValueError("deadline_at must be occurred_at + response_timeout_s")
        return self


class QuarantineHoldEnded(LedgerEvent):
    """The message left the waiting list without being admitted: decided without a scan."""

    type: Literal["quarantine.hold_ended"] = "quarantine.hold_ended"
    schema_version: Literal[1] = 1
    cause: Literal["action_applied", "forced_release", "deleted_by_admin"]
    waiting: NonNegativeInt  # messages still waiting after it
