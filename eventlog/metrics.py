"""Prometheus metrics of the Kafka plumbing; labels are bounded (stage, outcome, error class)."""

from prometheus_client import Counter

LOOP_BATCHES = Counter(
    "katagate_loop_transactions_total",
    "Consume-decide-produce transactions by outcome",
    ["stage", "outcome"],
)
LOOP_RECORDS = Counter(
    "katagate_loop_records_total",
    "Records consumed and committed by a stage's transactional loop",
    ["stage"],
)
LOOP_DEAD_LETTERED = Counter(
    "katagate_dead_lettered_total",
    "Records set aside to the dead-letter topic, by the exception class that refused them",
    ["stage", "error"],
)
