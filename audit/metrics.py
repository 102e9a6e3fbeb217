"""The checkpointer's Prometheus metrics (deploy/METRICS.md), per audited partition while this
instance is the elected checkpointer; a standby shows none. Labels are bounded: the relative
topic (mail, quarantine, control) and the partition."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Gauge

LAST_CHECKPOINT = Gauge(
    "katagate_audit_last_checkpoint_timestamp_seconds",
    "When the partition's latest checkpoint was signed (Unix time; 0: never)",
    ["topic", "partition"],
)
UNCOVERED = Gauge(
    "katagate_audit_uncovered_records",
    "Records of the partition past its last checkpoint: read and not yet signed, plus those the "
    "checkpointer has not read yet",
    ["topic", "partition"],
)
TRANSACTIONS = Counter(
    "katagate_audit_transactions_total",
    "Transactions of checkpoints this process committed (one per write of due checkpoints)",
)
EVERY_RECORDS = Gauge(
    "katagate_audit_checkpoint_every_records",
    "KATAGATE_AUDIT_EVERY_RECORDS: a partition gets a checkpoint after this many new records",
)
EVERY_SECONDS = Gauge(
    "katagate_audit_checkpoint_every_seconds",
    "KATAGATE_AUDIT_EVERY_S: a partition gets a checkpoint this long after its first uncovered "
    "record",
)


def show_checkpoint(place: tuple[str, int], created_at: str | None) -> None:
    seconds = 0.0 if created_at is None else datetime.fromisoformat(created_at).timestamp()
    LAST_CHECKPOINT.labels(place[0], str(place[1])).set(seconds)


def not_covered(read: int, position: int, end: int) -> int:
    """Records past the last checkpoint: `read` of them hashed and waiting, plus those between
    the reader's `position` and the partition's `end` (its high watermark), not read yet. Either
    offset unknown (negative: nothing fetched yet) counts the read ones only."""
    unread = end - position if position >= 0 and end >= 0 else 0
    return read + max(0, unread)


def show_uncovered(place: tuple[str, int], count: int) -> None:
    UNCOVERED.labels(place[0], str(place[1])).set(count)


def forget() -> None:
    """No longer the checkpointer (or stopped): its figures would be stale. Not on a failed
    write: the same owner starts over, and its records still wait."""
    LAST_CHECKPOINT.clear()
    UNCOVERED.clear()
