"""A Backup copy's bytes, read from `katagate.backup` where its row (the projector's
`GET /backup/copies/{id}`) says it lies, and checked against the row's sha256."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from katagate.admin.backup import copy_facts, refuse_unless_held
from katagate.eventlog.raw import RawReader
from katagate.eventlog.settings import KafkaSettings


def read_copy(settings: KafkaSettings, copy_row: Mapping[str, Any]) -> bytes:
    """The original message as it was received. InvalidCommand when the copy is not held;
    eventlog.raw.RawUnavailable when its records are gone or do not match their digest."""
    refuse_unless_held(copy_row)
    facts = copy_facts(copy_row)
    reader = RawReader(settings)
    try:
        return reader.read(facts.location.topic, facts.location.partition,
                           facts.location.offsets, str(copy_row["message_id"]), facts.sha256)
    finally:
        reader.close()
