"""Signed checkpoints: the record format of `katagate.audit`. Pure: no I/O, no clock.

A checkpoint is not a `schemas` event (it is not part of any stage's fold and must be decodable
without the event union): it is compact JSON whose signature covers the canonical JSON (sorted
keys, no spaces, ASCII) of every other field.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from katagate.schemas.errors import KatagateError

FORMAT = "katagate.audit.checkpoint"
HEX64 = r"^[0-9a-f]{64}$"
# Headers of the audit record, so tools can tell a checkpoint without parsing it.
HEADERS = (("katagate-type", b"audit.checkpoint"), ("katagate-version", b"1"))


class CheckpointError(KatagateError, ValueError):
    """The record is not a readable checkpoint."""


class Checkpoint(BaseModel):
    """One signed range of one partition's chain.

    `topic` is the name relative to the namespace (`mail`, `quarantine`, `control`) so a log
    restored under another prefix still verifies; `namespace` records the prefix at signing.
    `position` is the number of committed records of the partition before this range: the
    chain index of `first_offset`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    format: Literal["katagate.audit.checkpoint"] = "katagate.audit.checkpoint"
    version: Literal[1] = 1
    namespace: str
    topic: str
    partition: int = Field(ge=0)
    position: int = Field(ge=0)
    count: int = Field(ge=1)
    first_offset: int = Field(ge=0)
    last_offset: int = Field(ge=0)
    previous_head: str = Field(pattern=HEX64)
    head: str = Field(pattern=HEX64)
    created_at: str
    key_id: str
    signature: str = ""

    @property
    def end(self) -> int:
        """The chain position just after this range."""
        return self.position + self.count


def signed_bytes(checkpoint: Checkpoint) -> bytes:
    """The canonical JSON of every field but the signature: what the signature covers."""
    fields = checkpoint.model_dump(exclude={"signature"})
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> Checkpoint:
    signature = base64.b64encode(key.sign(signed_bytes(checkpoint))).decode("ascii")
    return checkpoint.model_copy(update={"signature": signature})


def signature_valid(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    try:
        raw = base64.b64decode(checkpoint.signature, validate=True)
        public_key.verify(raw, signed_bytes(checkpoint))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def encode(checkpoint: Checkpoint) -> bytes:
    data: dict[str, Any] = checkpoint.model_dump()
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def decode(value: bytes | None) -> Checkpoint:
    if value is None:
        raise CheckpointError("empty record")
    try:
        return Checkpoint.model_validate_json(value)
    except ValidationError as exc:
        raise CheckpointError(f"not a checkpoint: {exc.error_count()} invalid fields") from exc


def record_key(checkpoint: Checkpoint) -> bytes:
    return f"{checkpoint.topic}[{checkpoint.partition}]".encode()
