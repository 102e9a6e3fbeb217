"""Everything the log holds about one message, with whether the checkpoint covering each record
verifies: `katagate audit export --message ID`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from katagate.audit.chain import LogRecord
from katagate.audit.verify import RangeResult, Report, verify
from katagate.eventlog.settings import KafkaSettings


@dataclass(frozen=True)
class Exported:
    topic: str
    record: LogRecord
    position: int
    event: Any  # the parsed JSON body (or the raw text if it is not JSON)


def _body(value: bytes | None) -> Any:
    try:
        return json.loads(value or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return (value or b"").decode("utf-8", "replace")


def export_message(
    kafka: KafkaSettings, prefix: str, audit_topic: str, message_id: str,
    public_key: Ed25519PublicKey,
) -> tuple[list[dict[str, Any]], Report]:
    """The message's events from `mail` (its key) and its ledger entries from `quarantine`
    (their `message_id`), in log order per partition, each with its covering checkpoint."""
    found: list[Exported] = []
    key = message_id.encode()

    def observe(rel: str, record: LogRecord, position: int) -> None:
        if rel == "mail" and record.key == key:
            found.append(Exported(rel, record, position, _body(record.value)))
        elif rel == "quarantine":
            body = _body(record.value)
            if isinstance(body, dict) and body.get("message_id") == message_id:
                found.append(Exported(rel, record, position, body))

    report = verify(kafka, prefix, audit_topic, public_key, only={"mail", "quarantine"},
                    observe=observe)
    lines: list[dict[str, Any]] = []
    for item in found:
        covering = [r for r in report.ranges
                    if r.entry.checkpoint.topic == item.topic
                    and r.entry.checkpoint.partition == item.record.partition
                    and r.entry.checkpoint.position <= item.position < r.entry.checkpoint.end]
        lines.append({
            "topic": item.record.topic,
            "partition": item.record.partition,
            "offset": item.record.offset,
            "event": item.event,
            "checkpoint": None if not covering else {
                "index": covering[-1].entry.index,
                "first_offset": covering[-1].entry.checkpoint.first_offset,
                "last_offset": covering[-1].entry.checkpoint.last_offset,
                "verified": covering[-1].ok and not _continuity_failed(report, covering[-1]),
            },
        })
    return lines, report


def _continuity_failed(report: Report, result: RangeResult) -> bool:
    index = result.entry.index
    return any(f.checkpoint == index for f in report.failures)
