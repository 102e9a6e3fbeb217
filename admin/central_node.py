"""Administrator commands about the Central Node connection, validated into control events."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from katagate.admin.errors import InvalidCommand
from katagate.schemas import CentralNodeObserved, NodeAddress, ProducerRef

__all__ = ["FINGERPRINT", "InvalidCommand", "normalise_fingerprint", "pin_key"]

FINGERPRINT = re.compile(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")


def normalise_fingerprint(text: str) -> str:
    """Accept the forms people paste (lower case, no colons, spaces) and return the canonical
    colon-separated upper-case form, or refuse naming the expected shape."""
    compact = re.sub(r"[\s:]", "", text).upper()
    if not re.fullmatch(r"[0-9A-F]{64}", compact):
        raise InvalidCommand(
            "fingerprint: expected a SHA-256 public key fingerprint, 32 hex bytes "
            f"(e.g. AB:CD:...), got {text!r}"
        )
    return ":".join(compact[i:i + 2] for i in range(0, 64, 2))


def pin_key(
    node: NodeAddress | None, fingerprint: str, actor: str, now: datetime
) -> CentralNodeObserved:
    """The administrator pins the Central Node's key explicitly (e.g. after KATA replaced it)."""
    if node is None:
        raise InvalidCommand(
            "central_node_address: set the KATA Central Node IPv4 address before pinning its key"
        )
    return CentralNodeObserved(
        event_id=uuid.uuid4(), occurred_at=now,
        producer=ProducerRef(stage="admin", instance=actor[:128] or "admin"),
        central_node=node, fingerprint=normalise_fingerprint(fingerprint), pinned=True,
    )
