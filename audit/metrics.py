"""The checkpointer's Prometheus metrics (deploy/METRICS.md), per audited partition while this
instance is the elected checkpointer; a standby shows none. Labels are bounded: the relative
topic (mail, quarantine, control) and the partition."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Gauge

LAST_CHECKPOINT = Gauge(
    "katagate_audit_last_checkpoint_timestamp_seconds",
    "When the partition's latest checkpoint was signed (Unix time; 0: never)",
    ["topic", "partition"],
)
UNCOVERED = Gauge(
    "katagate_audit_uncovered_records",
    "Committed records of the partition read by the checkpointer and not yet in a checkpoint",
    ["topic", "partition"],
)
EVERY_RECORDS = Gauge(
    "katagate_audit_checkpoint_every_records",
    "KATAGATE_AUDIT_EVERY_RECORDS: a partition gets a checkpoint after this many new records",
)


def show_checkpoint(place: tuple[str, int], created_at: str | None) -> None:
    seconds = 0.0 if created_at is None else datetime.fromisoformat(created_at).timestamp()
    LAST_CHECKPOINT.labels(place[0], str(place[1])).set(seconds)


def show_uncovered(place: tuple[str, int], count: int) -> None:
    UNCOVERED.labels(place[0], str(place[1])).set(count)


def forget() -> None:
    """No longer the checkpointer: its figures would be stale."""
    LAST_CHECKPOINT.clear()
    UNCOVERED.clear()
