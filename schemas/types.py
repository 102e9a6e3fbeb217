"""Value types shared by mail and control events.

Constraints live in the types, not in ad-hoc validators, so the generated JSON Schemas carry
them too and every event that uses a value checks it the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    field_validator,
)


def _to_utc(value: datetime) -> datetime:
    # One representation per instant: equal events serialise to equal bytes.
    return value.astimezone(UTC)


# An aware instant, normalised to UTC. Naive datetimes are rejected (AwareDatetime).
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]

# The message id doubles as the KATA scanId, which may hold no spaces or special characters.
MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{8,64}$")]
ScanId = MessageId

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

# SHA-256 over a public key (SPKI), shown the way administrators compare it on both sides.
Fingerprint = Annotated[str, StringConstraints(pattern=r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")]

# Who did an administrative act: a user or service name, printable, single line.
Actor = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")]
# What the one who acted said about it (`--note`/`--actor` of the CLI: who asked, a ticket): free
# text kept apart from `actor`, which names who acted as the system saw it (`cli:<OS user>`, a
# console account). Empty on events written before it existed.
ActorNote = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{0,500}$")]

# The sensorId is a path segment of the KATA scanner API, so keep it URL-safe.
SensorId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]

RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

# Prepended to a Subject header: a CR or LF would inject a header, NUL breaks MTAs, other
# control characters (tab aside) and Unicode line separators have no place in a header either.
SubjectTag = Annotated[
    str, StringConstraints(pattern=r"^[^\x00-\x08\x0A-\x1F\x7F\u0085\u2028\u2029]{1,255}$")
]

Address = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Port = Annotated[int, Field(ge=1, le=65535)]
ResponseTimeout = Annotated[int, Field(ge=60, le=86400)]
# How long a Backup copy is kept (days), and how large the Backup may grow (bytes).
BackupMaxAgeDays = Annotated[int, Field(ge=1, le=3650)]
BackupMaxBytes = Annotated[int, Field(ge=1_048_576, le=2**50)]
# The product's documented range: 1 to 4294967296 (sic, 2**32).
MessageCountLimit = Annotated[int, Field(ge=1, le=4294967296)]
Version = Annotated[int, Field(ge=1)]


def _check_host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("must be host:port with a port in 1..65535")
    return value


# A next hop as the delivery stage dialled it: "mx.example.net:25" or "[2001:db8::1]:25".
HostPort = Annotated[
    str,
    StringConstraints(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$"),
    AfterValidator(_check_host_port),
]

DetectType = Literal["am", "sb", "yara", "url_reputation", "ids"]
ScanState = Literal["detect", "not_detected", "timeout", "error"]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProducerRef(_Value):
    """The stage and instance that wrote an event: where to look when an event is wrong."""

    stage: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    instance: Annotated[str, StringConstraints(pattern=r"^\S{1,128}$")]


class RawLocation(_Value):
    """Where raw bytes live: chunk records of one partition, listed in reading order."""

    topic: Annotated[str, StringConstraints(min_length=1, max_length=249)]
    partition: NonNegativeInt
    offsets: Annotated[list[NonNegativeInt], Field(min_length=1)]
    chunk_bytes: Annotated[int, Field(ge=1)]
    # The message id the chunks are keyed by, when not the id of the event naming them: the
    # copies of a split message share the chunks written under the first copy's id.
    key: MessageId | None = None

    @field_validator("offsets")
    @classmethod
    def _offsets_increase(cls, value: list[int]) -> list[int]:
        # Chunks are written in order by one idempotent producer, so offsets strictly increase
        # (not necessarily contiguously: other records and transaction markers take offsets too).
        if any(b <= a for a, b in pairwise(value)):
            raise ValueError("offsets must be strictly increasing")
        return value


class NodeAddress(_Value):
    """A KATA Central Node endpoint; the product accepts IPv4 only."""

    address: IPv4Address
    port: Port


class Detect(_Value):
    """One KATA detect; name and details come from /detects and may be unknown."""

    type: DetectType
    name: Annotated[str, StringConstraints(max_length=1000)] | None = None
    details: Annotated[str, StringConstraints(max_length=65536)] | None = None
