"""Mail lifecycle events (topic `katagate.mail`; the ledger ones also on `katagate.quarantine`).

Each event records a fact, including the values that explain it (limits, usage, replies), so an
auditor reading one event needs no other to see why it happened.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Self, get_args

from pydantic import Field, IPvAnyAddress, NonNegativeInt, StringConstraints, model_validator

from katagate.schemas.envelope import Event, MailEvent
from katagate.schemas.types import (
    Actor,
    ActorNote,
    Address,
    Detect,
    HostPort,
    MessageCountLimit,
    MessageId,
    NodeAddress,
    RawLocation,
    ResponseTimeout,
    RuleId,
    ScanId,
    ScanState,
    SensorId,
    Sha256Hex,
    SubjectTag,
    UtcDatetime,
)

DenialReason = Literal[
    "size_limit", "count_limit", "too_large", "kata_disabled", "rule_kata_disabled", "not_connected"
]
ActionReason = Literal[
    "detected",
    "not_detected",
    "timeout",
    "error",
    "size_limit",
    "count_limit",
    "too_large",
    "kata_disabled",
    "rule_kata_disabled",
    "not_connected",
    "forced_release",
    "deleted_by_admin",
]
# KATA could not answer for these: what `on_unavailable` (skip, hold, tempfail) is about.
UNAVAILABLE_REASONS = frozenset({
    "timeout", "error", "size_limit", "count_limit", "too_large", "not_connected"})
SmtpReply = Annotated[str, StringConstraints(max_length=1000)]
Recipients = Annotated[list[Address], Field(min_length=1, max_length=1000)]


class MessageReceived(MailEvent):
    """Ingest accepted a message; written once its raw chunks are acknowledged, before `250`."""

    type: Literal["mail.received"] = "mail.received"
    schema_version: Literal[1] = 1
    envelope_from: Annotated[str, StringConstraints(max_length=256)]  # "" is the null sender <>
    envelope_to: Recipients
    client_ip: IPvAnyAddress
    helo: Annotated[str, StringConstraints(max_length=255)]
    tls: bool
    size: NonNegativeInt
    sha256: Sha256Hex
    subject: Annotated[str, StringConstraints(max_length=2000)] | None
    rule_id: RuleId | None  # None: no rule matched
    settings_version: NonNegativeInt  # the KATA settings the decision will be made under
    raw: RawLocation
    # The SHA-256 of the message as the client sent it, before the gateway's own trace field:
    # the key of the verdict cache. None in events written before it was recorded.
    content_sha256: Sha256Hex | None = None
    # Set when the message's recipients fell under rules with different KATA sections and
    # ingest split it into one copy per section: every copy's id, in order, this one included
    # (the first is the id the client was told first). Empty: not split.
    copies: Annotated[list[MessageId], Field(max_length=1000)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _copies_name_this_one(self) -> Self:
        if self.copies and self.message_id not in self.copies:
            raise ValueError("copies must include this message's own id")
        return self


class LedgerEvent(MailEvent):
    """An event of the KATA Quarantine's ledger, with the usage after it as the single ledger
    writer saw it. The admission writes each to `katagate.quarantine` and, with the same event
    id, to the message's `katagate.mail` partition: a reader of both topics meets it twice."""

    size: NonNegativeInt
    bytes_in_use: NonNegativeInt
    messages_in_use: NonNegativeInt


class QuarantineAdmitted(LedgerEvent):
    type: Literal["quarantine.admitted"] = "quarantine.admitted"
    schema_version: Literal[1] = 1
    rule_id: RuleId | None
    settings_version: NonNegativeInt
    response_timeout_s: ResponseTimeout
    deadline_at: UtcDatetime  # the timeout as data, so the timer can be rebuilt by replay
    limit_bytes: Annotated[int, Field(ge=1)]
    limit_messages: MessageCountLimit

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.deadline_at != self.occurred_at + timedelta(seconds=self.response_timeout_s):
            raise ValueError("deadline_at must be occurred_at + response_timeout_s")
        # The admission invariant: usage never exceeds either limit, and includes this message.
        if not self.size <= self.bytes_in_use <= self.limit_bytes:
            raise ValueError("bytes_in_use must be within size..limit_bytes")
        if not 1 <= self.messages_in_use <= self.limit_messages:
            raise ValueError("messages_in_use must be within 1..limit_messages")
        return self


class QuarantineDenied(LedgerEvent):
    type: Literal["quarantine.denied"] = "quarantine.denied"
    schema_version: Literal[1] = 1
    reason: DenialReason
    limit_bytes: Annotated[int, Field(ge=1)]
    limit_messages: MessageCountLimit
    # The quarantine was full and so was its waiting list (on_unavailable = hold; bounded,
    # decider/ledger.py): the message could not wait, `hold_outcome` decides it at once.
    waiting_list_full: bool = False


class QuarantineReleased(LedgerEvent):
    type: Literal["quarantine.released"] = "quarantine.released"
    schema_version: Literal[1] = 1
    cause: Literal["action_applied", "forced_release", "deleted_by_admin"]


class ForcedRelease(MailEvent):
    """An administrator sent a message on without waiting; the scan goes on."""

    type: Literal["quarantine.forced_release"] = "quarantine.forced_release"
    schema_version: Literal[1] = 1
    actor: Actor
    comment: Annotated[str, StringConstraints(max_length=1000)] = ""
    actor_note: ActorNote = ""


class ForcedDelete(MailEvent):
    """An administrator deleted a message waiting in the KATA Quarantine: it is discarded
    without waiting for its verdict (a verdict that still comes is recorded as late)."""

    type: Literal["quarantine.forced_delete"] = "quarantine.forced_delete"
    schema_version: Literal[1] = 1
    actor: Actor
    comment: Annotated[str, StringConstraints(max_length=1000)] = ""
    actor_note: ActorNote = ""


class ScanSubmitted(MailEvent):
    type: Literal["scan.submitted"] = "scan.submitted"
    schema_version: Literal[1] = 1
    scan_id: ScanId
    central_node: NodeAddress
    sensor_id: SensorId


ScanFailureReason = Literal[
    "too_large",  # 413: the Central Node will not scan it; the message is Skipped
    "busy",  # 429: its concurrency limit; retried later
    "server_error",  # 500 or another unexpected status; retried
    "unreachable",  # no TCP/TLS connection; retried
    "not_authorized",  # 401: the sensor is not (or no longer) accepted; retried
    "certificate_mismatch",  # the pinned Central Node key changed: nothing was sent
    "garbage",  # a reply that does not parse; retried
    "content_unavailable",  # the raw message could not be read back from Kafka
]


class ScanFailed(MailEvent):
    """A submission or poll for this message's scan did not succeed, and why.

    `final` failures end the scan (the decider Skips the message); others are retried until
    the response timeout fires.
    """

    type: Literal["scan.failed"] = "scan.failed"
    schema_version: Literal[1] = 1
    scan_id: ScanId
    reason: ScanFailureReason
    detail: str = Field(default="", max_length=1000)
    attempt: int = Field(ge=1)
    final: bool


class _Verdict(MailEvent):
    scan_id: ScanId
    state: ScanState
    detects: list[Detect] = Field(default_factory=list)

    @model_validator(mode="after")
    def _detects_only_on_detect(self) -> Self:
        # A detect may arrive before its details, so "detect" with no detects is allowed.
        if self.detects and self.state != "detect":
            raise ValueError(f"detects must be empty when state is {self.state!r}")
        return self


class VerdictReceived(_Verdict):
    """KATA's final state for a scan. v2 replaced v1's `detect_types` with `detects`."""

    type: Literal["scan.verdict"] = "scan.verdict"
    schema_version: Literal[2] = 2
    # Set when the verdict was not asked of KATA for this message but reused from the scan of
    # an identical one (the verdict cache, or a copy of the same split message): that scan's
    # id. None: KATA scanned this message.
    cached_from: ScanId | None = None

    @model_validator(mode="after")
    def _cached_only_final(self) -> Self:
        if self.cached_from is not None and self.state not in ("detect", "not_detected"):
            raise ValueError("only a detect or not_detected verdict is reused")
        return self


class LateVerdictReceived(_Verdict):
    """A verdict after the message was already acted on: recorded and alerted, never applied."""

    type: Literal["scan.late_verdict"] = "scan.late_verdict"
    schema_version: Literal[1] = 1
    after: Literal["timeout", "forced_release", "action_applied", "deleted_by_admin"]


class ScanTimedOut(MailEvent):
    type: Literal["scan.timed_out"] = "scan.timed_out"
    schema_version: Literal[1] = 1
    scan_id: ScanId | None  # None: the message was never submitted
    deadline_at: UtcDatetime


class ActionDecided(MailEvent):
    """The decision-table outcome; the apply shell carries it out."""

    type: Literal["action.decided"] = "action.decided"
    schema_version: Literal[1] = 1
    action: Literal["deliver", "delete", "reject"]
    tag: SubjectTag | None  # prepended to Subject when a detected message is delivered
    backup: bool
    skipped: bool  # the product's "Skipped": delivered unchanged, KATA gave no usable verdict
    reason: ActionReason
    # The rule's on_unavailable kept the message (hold, or tempfail after its 250) and KATA did
    # not answer: `hold_outcome` decided it (deliver Skipped, or reject). False in older events.
    held: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.skipped and self.action != "deliver":
            raise ValueError("a skipped message must be delivered (action 'deliver')")
        if self.reason == "not_detected" and (self.action != "deliver" or self.skipped):
            raise ValueError("reason 'not_detected' requires action 'deliver', not skipped")
        if self.tag is not None and (self.action != "deliver" or self.reason != "detected"):
            raise ValueError("a tag applies only when delivering a detected message")
        if self.reason == "deleted_by_admin" and (self.action != "delete" or self.backup):
            raise ValueError("reason 'deleted_by_admin' requires action 'delete', no backup")
        if self.held and (self.reason not in UNAVAILABLE_REASONS or self.action == "delete"):
            raise ValueError("a held message's outcome is deliver or reject, for a reason "
                             "KATA could not answer")
        return self


class BackupStored(MailEvent):
    """A copy of the original (before any action) was written to `katagate.backup`."""

    type: Literal["backup.stored"] = "backup.stored"
    schema_version: Literal[1] = 1
    location: RawLocation
    sha256: Sha256Hex


class MessageDelivered(MailEvent):
    type: Literal["delivery.delivered"] = "delivery.delivered"
    schema_version: Literal[1] = 1
    next_hop: HostPort
    recipients: Recipients
    reply: SmtpReply  # the next hop's final reply line
    tagged: bool
    attempts: Annotated[int, Field(ge=1)]


class DeliveryDeferred(MailEvent):
    type: Literal["delivery.deferred"] = "delivery.deferred"
    schema_version: Literal[1] = 1
    next_hop: HostPort
    attempt: Annotated[int, Field(ge=1)]
    reply: SmtpReply
    retry_at: UtcDatetime


class DeliveryFailed(MailEvent):
    type: Literal["delivery.failed"] = "delivery.failed"
    schema_version: Literal[1] = 1
    next_hop: HostPort
    attempts: Annotated[int, Field(ge=1)]
    reply: SmtpReply
    recipients: Recipients  # those that failed


class MessageDiscarded(MailEvent):
    type: Literal["message.discarded"] = "message.discarded"
    schema_version: Literal[1] = 1
    reason: Literal["kata_delete", "deleted_by_admin"]


class NdrSent(MailEvent):
    type: Literal["ndr.sent"] = "ndr.sent"
    schema_version: Literal[1] = 1
    to: Address
    dsn_message_id: Annotated[str, StringConstraints(min_length=1, max_length=998)]
    reason: Literal["kata_reject", "delivery_failed"]


class NdrSuppressed(MailEvent):
    type: Literal["ndr.suppressed"] = "ndr.suppressed"
    schema_version: Literal[1] = 1
    reason: Literal["null_sender", "ndr_disabled"]


# How an accepted message ends: each ends in exactly one (see terminal_outcome).
TerminalOutcome = Literal["delivered", "discarded", "ndr_sent", "ndr_suppressed",
                          "delivery_failed"]
TERMINAL_OUTCOMES: tuple[TerminalOutcome, ...] = get_args(TerminalOutcome)


def terminal_outcome(event: Event) -> TerminalOutcome | None:
    """The terminal event of a message, named: every accepted message ends in exactly one of
    these (invariant 2 of docs/ARCHITECTURE.md). An NDR for a failed delivery follows the
    failure, which is the terminal event; an NDR for a KATA reject is itself the end."""
    match event:
        case MessageDelivered():
            return "delivered"
        case MessageDiscarded():
            return "discarded"
        case NdrSent(reason="kata_reject"):
            return "ndr_sent"
        case NdrSuppressed():
            return "ndr_suppressed"
        case DeliveryFailed():
            return "delivery_failed"
    return None
