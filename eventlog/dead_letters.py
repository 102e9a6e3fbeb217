"""Records a handler cannot process go to the dead-letter topic, with where they came from and
why, in the batch's own transaction: the loop keeps going and nothing is lost."""

from __future__ import annotations

import logging
import traceback

from katagate.eventlog.handler import Poison
from katagate.eventlog.metrics import LOOP_DEAD_LETTERED
from katagate.eventlog.records import Consumed, Outgoing

log = logging.getLogger(__name__)

# Dead-letter headers: where the record came from and why it was set aside.
DLQ_TOPIC = "dlq-topic"
DLQ_PARTITION = "dlq-partition"
DLQ_OFFSET = "dlq-offset"
DLQ_STAGE = "dlq-stage"
DLQ_REASON = "dlq-reason"


def set_aside(stage: str, dead_letter_topic: str, record: Consumed,
              exc: Exception) -> Outgoing:
    """The dead-letter record for `record`, refused with `exc`. A pure decision that fails fails
    the same way every time, so retrying would stop the partition for good."""
    if not isinstance(exc, Poison):
        log.error("%s: handler failed on %s[%d]@%d\n%s", stage, record.topic, record.partition,
                  record.offset, "".join(traceback.format_exception(exc)))
    LOOP_DEAD_LETTERED.labels(stage, type(exc).__name__).inc()
    reason = f"{type(exc).__name__}: {exc}"
    return Outgoing(
        topic=dead_letter_topic,
        key=record.key,
        value=record.value or b"",
        headers=(
            *record.headers,
            (DLQ_TOPIC, record.topic.encode()),
            (DLQ_PARTITION, str(record.partition).encode()),
            (DLQ_OFFSET, str(record.offset).encode()),
            (DLQ_STAGE, stage.encode()),
            (DLQ_REASON, reason[:4000].encode("utf-8", "replace")),
        ),
    )
