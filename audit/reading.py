"""What the audit reads and how it sees a record. The reading itself (to the last stable
offsets, manual assignment, nothing committed: the audit never moves anyone's offsets) is
eventlog/read_to_end.py's."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer

from katagate.audit.chain import LogRecord
from katagate.eventlog.clients import new_reader
from katagate.eventlog.fetching import FETCH_WHEN_DRAINED
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames

# The audited topics, relative to the namespace: the event logs that are kept forever.
AUDITED = ("mail", "quarantine", "control")


def audited_topics(prefix: str) -> dict[str, str]:
    """Relative name → topic name, e.g. {"mail": "katagate.mail", ...}."""
    names = TopicNames(prefix)
    return {"mail": names.mail, "quarantine": names.quarantine, "control": names.control}


def new_consumer(kafka: KafkaSettings, following: bool = False) -> Consumer:
    """`following`: the checkpointer's reader, which follows the log as it is written; the
    whole-log reads (verify, reconcile, a checkpoint now) keep librdkafka's read-ahead."""
    return new_reader(kafka, "audit", **{"auto.offset.reset": "earliest",
                                         "enable.partition.eof": True,
                                         **(FETCH_WHEN_DRAINED if following else {})})


def from_message(message: Any) -> LogRecord:
    """A consumed message as the audit sees it (null header values stay null; the timestamp
    is information for the grace period, never hashed)."""
    _kind, timestamp_ms = message.timestamp()
    return LogRecord(
        topic=message.topic(), partition=message.partition(), offset=message.offset(),
        key=message.key(), value=message.value(), headers=tuple(message.headers() or ()),
        timestamp_ms=timestamp_ms,
    )

