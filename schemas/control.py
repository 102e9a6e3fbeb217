"""Control events (topic `katagate.control`): settings, rules, keys, connection.

Settings and rule events carry the full state after the change, so a projection rebuilds the
current value from the latest event alone and replay needs nothing earlier.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from katagate.schemas.envelope import Event
from katagate.schemas.types import (
    Actor,
    ActorNote,
    BackupMaxAgeDays,
    BackupMaxBytes,
    Fingerprint,
    MessageCountLimit,
    NodeAddress,
    Port,
    ResponseTimeout,
    RuleId,
    SensorId,
    SubjectTag,
    UtcDatetime,
    Version,
)

MIB = 1_048_576

# What to do with mail KATA cannot scan now (not Connected, the quarantine full, too large):
# `skip` delivers it unscanned (the product's behaviour), `hold` keeps it until KATA answers
# or the response timeout ends (then `hold_outcome`), `tempfail` answers 451 4.7.0 at SMTP.
OnUnavailable = Literal["skip", "hold", "tempfail"]
HoldOutcome = Literal["skip", "reject"]
# RFC 5322 field-name: printable ASCII but ":"; ours must also read as a header of its own.
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,75}$")]
# The verdict header's value; its placeholders are VERDICT_HEADER_FIELDS.
VERDICT_HEADER_FIELDS = ("verdict", "scanned_at", "scan_id", "detects", "message_id")
HeaderFormat = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e]{1,200}$")]
# Names the verdict header may not take: apply strips a same-named field from every delivered
# message, so one of these would remove its trace, addressing, MIME structure or signatures.
RESERVED_HEADER_NAMES = frozenset({
    "received", "return-path", "received-spf", "delivered-to", "x-original-to",
    "authentication-results", "dkim-signature", "domainkey-signature", "subject", "from", "to",
    "cc", "bcc", "sender", "reply-to", "date", "message-id", "in-reply-to", "references",
    "comments", "keywords", "mime-version", "disposition-notification-to", "auto-submitted",
    "precedence"})
RESERVED_HEADER_PREFIXES = ("content-", "arc-", "resent-", "list-", "x-katagate-")


def reserved_header(name: str) -> str | None:
    """Why `name` may not be the verdict header's name, or None when it may."""
    folded = name.casefold()
    if folded in RESERVED_HEADER_NAMES or folded.startswith(RESERVED_HEADER_PREFIXES):
        return (f"{name} is a structural or trace field: apply would strip it from every "
                f"delivered message; use a name of its own such as X-KATA-Verdict")
    return None


def placeholder_problem(template: str, allowed: Sequence[str]) -> str | None:
    """What is wrong with `template`'s placeholders, or None: only bare `{name}` of `allowed`
    (no format spec or conversion: `{verdict:>99999}` would make a huge value)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a valid format ({exc})"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed:
            return f"unknown placeholder {{{name}}}"
        if spec or conversion is not None:
            return (f"placeholder {{{name}}} takes no format spec or conversion "
                    f"(only a bare {{{name}}})")
    return None


class KataSettings(BaseModel):
    """The product's KATA protection settings, with its documented ranges and defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    central_node_address: IPv4Address | None = None  # None: not configured
    central_node_port: Port = 443
    response_timeout_s: ResponseTimeout = 600
    quarantine_max_bytes: Annotated[int, Field(ge=MIB)] = 1024 * MIB
    quarantine_max_messages: MessageCountLimit = 5000
    ndr_enabled: bool = True  # NDR for messages rejected after the SMTP session
    poll_interval_s: Annotated[int, Field(ge=1, le=3600)] = 60
    # Backup retention: a copy is removed when it is this old, or, oldest first, while the
    # Backup holds more than this. Added after the first release: older settings events
    # decode with these defaults (30 days was the Backup topic's retention then).
    backup_max_age_days: BackupMaxAgeDays = 30
    backup_max_bytes: BackupMaxBytes = 10240 * MIB
    # Added with the policy's second part (all defaulted, so older events decode as before).
    on_unavailable: OnUnavailable = "skip"
    hold_outcome: HoldOutcome = "skip"  # for held mail whose response timeout ended
    verdict_header_name: HeaderName | None = None  # None: no verdict header on delivered mail
    verdict_header_format: HeaderFormat = "{verdict}; scanned={scanned_at}"
    # A verdict for the same content is reused this long; 0 disables the cache.
    verdict_cache_ttl_s: Annotated[int, Field(ge=0, le=604800)] = 3600

    @field_validator("verdict_header_name")
    @classmethod
    def _not_reserved(cls, value: str | None) -> str | None:
        problem = None if value is None else reserved_header(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("verdict_header_format")
    @classmethod
    def _bare_placeholders(cls, value: str) -> str:
        problem = placeholder_problem(value, VERDICT_HEADER_FIELDS)
        if problem is not None:
            raise ValueError(f"{problem}; allowed: {', '.join(VERDICT_HEADER_FIELDS)}")
        return value

    @classmethod
    def defaults(cls) -> KataSettings:
        return cls()


# What the product's "Set default values" resets; the rest is left as it was.
RESET_FIELDS: tuple[str, ...] = (
    "central_node_port",
    "response_timeout_s",
    "quarantine_max_bytes",
    "quarantine_max_messages",
)


class _SettingsEvent(Event):
    version: Version  # the settings version after this event; MessageReceived records it
    actor: Actor
    actor_note: ActorNote = ""

    def partition_key(self) -> str:
        return "kata-settings"


class KataSettingsChanged(_SettingsEvent):
    type: Literal["settings.kata_changed"] = "settings.kata_changed"
    schema_version: Literal[1] = 1
    settings: KataSettings
    changed: Annotated[list[str], Field(min_length=1)]

    @field_validator("changed")
    @classmethod
    def _known_unique(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(KataSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown settings fields: {', '.join(unknown)}")
        if len(set(value)) != len(value):
            raise ValueError("field names must not repeat")
        return value


class KataSettingsReset(_SettingsEvent):
    type: Literal["settings.kata_reset"] = "settings.kata_reset"
    schema_version: Literal[1] = 1
    settings: KataSettings

    @model_validator(mode="after")
    def _reset_fields_default(self) -> Self:
        defaults = KataSettings.defaults()
        stale = [f for f in RESET_FIELDS if getattr(self.settings, f) != getattr(defaults, f)]
        if stale:
            raise ValueError(f"settings after a reset must hold defaults for: {', '.join(stale)}")
        return self


class KataProtectionToggled(_SettingsEvent):
    type: Literal["settings.kata_toggled"] = "settings.kata_toggled"
    schema_version: Literal[1] = 1
    enabled: bool


Pattern = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RuleKata(BaseModel):
    """A rule's KATA protection section; defaults are the product's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    action: Literal["delete", "reject", "skip"] = "delete"  # "If KATA detected an event"
    tag: SubjectTag | None = "[KATA detect]"  # None: no subject tag
    backup: bool = True  # place a copy of the original in Backup
    on_unavailable: OnUnavailable | None = None  # None: the global setting


class Rule(BaseModel):
    """A mail processing rule; the first enabled rule (by position) whose patterns match wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: RuleId
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    enabled: bool = True
    position: Annotated[int, Field(ge=0)]
    senders: Annotated[list[Pattern], Field(min_length=1)] = ["*"]  # glob patterns
    recipients: Annotated[list[Pattern], Field(min_length=1)] = ["*"]
    kata: RuleKata = RuleKata()


class _RuleEvent(Event):
    version: Version  # the rule set's version after this event
    actor: Actor
    actor_note: ActorNote = ""


class _WholeRuleEvent(_RuleEvent):
    rule: Rule  # the full rule after the event

    def partition_key(self) -> str:
        return f"rule:{self.rule.rule_id}"


class RuleCreated(_WholeRuleEvent):
    type: Literal["rule.created"] = "rule.created"
    schema_version: Literal[1] = 1


class RuleChanged(_WholeRuleEvent):
    type: Literal["rule.changed"] = "rule.changed"
    schema_version: Literal[1] = 1


class _RuleIdEvent(_RuleEvent):
    rule_id: RuleId

    def partition_key(self) -> str:
        return f"rule:{self.rule_id}"


class RuleDeleted(_RuleIdEvent):
    type: Literal["rule.deleted"] = "rule.deleted"
    schema_version: Literal[1] = 1


class RuleKataToggled(_RuleIdEvent):
    type: Literal["rule.kata_toggled"] = "rule.kata_toggled"
    schema_version: Literal[1] = 1
    enabled: bool


class SensorKeyGenerated(Event):
    """Our sensor key pair was (re)generated. Only the public certificate is ever logged."""

    type: Literal["sensor.key_generated"] = "sensor.key_generated"
    schema_version: Literal[1] = 1
    sensor_id: SensorId
    fingerprint: Fingerprint
    certificate_pem: Annotated[str, StringConstraints(min_length=1, max_length=16384)]

    @field_validator("certificate_pem")
    @classmethod
    def _public_only(cls, value: str) -> str:
        # The log is kept forever and widely read: a private key must never reach it.
        if "PRIVATE KEY" in value:
            raise ValueError("must not contain a private key")
        if "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be a PEM certificate")
        return value

    def partition_key(self) -> str:
        return "sensor"


class CentralNodeObserved(Event):
    """The Central Node's key as seen in a TLS handshake, and whether it matches the pin."""

    type: Literal["central_node.observed"] = "central_node.observed"
    schema_version: Literal[1] = 1
    central_node: NodeAddress
    fingerprint: Fingerprint
    pinned: bool
    # The certificate's notAfter, shown in the state window; trust is the key, not these dates.
    # Added later: events recorded before it read as "not recorded".
    certificate_not_after: UtcDatetime | None = None
    actor_note: ActorNote = ""  # an administrator's pin (`katagate kata pin --note`)

    def partition_key(self) -> str:
        return "central-node"


ConnectionState = Literal[
    "not_configured",
    "connecting",
    "awaiting_confirmation",
    "connected",
    "rejected",
    "certificate_mismatch",
    "unreachable",
    "error",
]


class ConnectionStateChanged(Event):
    type: Literal["connection.state_changed"] = "connection.state_changed"
    schema_version: Literal[1] = 1
    state: ConnectionState
    previous: ConnectionState | None  # None: the first state after start
    central_node: NodeAddress | None
    detail: Annotated[str, StringConstraints(max_length=1000)] = ""
    # The node answered as a KATA Central Node, but `require_manual_pin` leaves the pin to an
    # administrator, who confirms the fingerprint observed (`katagate kata pin`).
    pin_required: bool = False

    def partition_key(self) -> str:
        return "connection"
