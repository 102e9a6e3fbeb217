"""The one serialisation of every view: canonical JSON, so "live equals replay" is a string
comparison.

Keys sorted, no whitespace, UTF-8 without escapes, instants in UTC as
`YYYY-MM-DDTHH:MM:SS.ffffffZ` (fixed width: the strings sort as the instants do).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from uuid import UUID

from pydantic import BaseModel


def timestamp(value: datetime) -> str:
    """An aware instant as fixed-width UTC ISO 8601."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes have no canonical form")
    # isoformat of a UTC instant ends in "+00:00"; it is several times faster than strftime.
    return value.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(value: datetime) -> int:
    """An aware instant as whole microseconds since the epoch (exact, unlike a float)."""
    since = value - EPOCH
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def from_micros(value: int) -> str:
    """The canonical form of an instant given in microseconds since the epoch."""
    return timestamp(EPOCH + timedelta(microseconds=value))


def jsonable(value: Any) -> Any:
    """Plain JSON data for a view or an event field; datetimes in canonical form."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinities have no JSON form")
        return value
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, UUID | IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, BaseModel):
        return {name: jsonable(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(jsonable(v) for v in value)
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def canonical_json(value: Any) -> str:
    """One line of canonical JSON (no trailing newline)."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def document(value: Any) -> bytes:
    """What the HTTP API serves and replay writes for a view: canonical JSON and a newline."""
    return (canonical_json(value) + "\n").encode("utf-8")
