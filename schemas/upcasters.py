"""Upcasters: old event payloads are rewritten on read, never in the log.

`UPCASTERS[(type, v)]` takes a payload dict at version v and returns a new dict at v + 1. Each
is a pure function of the dict (no clock, no lookups) and must not mutate its input, so the same
record always decodes to the same event. `upcast` chains them up to the current version.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from katagate.schemas.errors import SchemaError

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


def upcast_verdict_v1_v2(data: Payload) -> Payload:
    """scan.verdict v1 listed only detect type names; v2 holds Detect objects with details."""
    out = {k: copy.deepcopy(v) for k, v in data.items() if k != "detect_types"}
    detect_types = data.get("detect_types") or []
    out["detects"] = [{"type": t, "name": None, "details": None} for t in detect_types]
    out["schema_version"] = 2
    return out


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("scan.verdict", 1): upcast_verdict_v1_v2,
}


def upcast(data: Payload, current: int) -> Payload:
    """Apply upcasters from data's version until it reaches `current`; input left unchanged."""
    event_type = data["type"]
    version: int = data["schema_version"]
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise SchemaError(f"{event_type} v{version}: no upcaster to v{version + 1}")
        data = step(data)
        if data.get("schema_version") != version + 1:
            raise SchemaError(
                f"{event_type} v{version}: upcaster did not produce schema_version {version + 1}"
            )
        version += 1
    return data
