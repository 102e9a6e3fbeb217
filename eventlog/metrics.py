"""Prometheus metrics of the Kafka plumbing; labels are bounded (stage, outcome, error class)."""

from prometheus_client import Counter, Gauge

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
CONSUMER_LAG_RECORDS = Gauge(
    "katagate_consumer_lag_records",
    "Records between a stage's position and the end of its partitions",
    ["stage"],
)
CONSUMER_LAG_SECONDS = Gauge(
    "katagate_consumer_lag_seconds",
    "Age of the last record a stage processed while it is behind; 0 when caught up",
    ["stage"],
)
EVENTS_WRITTEN = Counter(
    "katagate_events_written_total",
    "Records committed (or, for ingest, acknowledged) by this process, by topic (without the "
    "deployment's prefix)",
    ["topic"],
)
HANGING_OFFSET_COMMITS = Counter(
    "katagate_hanging_offset_commits_total",
    "Offset commits found hanging (unstable past any transaction's life) and ended by the stage",
    ["stage"],
)
