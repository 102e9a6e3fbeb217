"""The ingest stage's Prometheus metrics; labels are bounded (fixed reasons and outcomes)."""

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter(
    "katagate_ingest_messages_received_total", "Messages whose DATA reached the final dot"
)
ACCEPTED = Counter(
    "katagate_ingest_messages_accepted_total", "Messages durable in Kafka and answered 250"
)
REFUSED = Counter(
    "katagate_ingest_refusals_total",
    "Commands or messages refused, by reason and reply class (temporary or permanent)",
    ["reason", "kind"],
)
ACCEPTED_BYTES = Counter(
    "katagate_ingest_accepted_bytes_total", "Raw bytes of the messages accepted"
)
COMMIT_SECONDS = Histogram(
    "katagate_ingest_commit_seconds",
    "From a message's hand-over to the writer until its outcome (both writes acknowledged)",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
)
BATCH_MESSAGES = Histogram(
    "katagate_ingest_batch_messages",
    "Messages the writer took from the sessions in one turn (produced together)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
WRITES = Counter(
    "katagate_ingest_writes_total",
    "Messages handed to the writer, by outcome (durable, late, failed, unavailable)",
    ["outcome"],
)
WRITTEN_AFTER_REFUSAL = Counter(
    "katagate_ingest_written_after_refusal_total",
    "Messages acknowledged by Kafka after their session had answered 451: delivered, and "
    "the sender's retry is a second copy",
)

VERIFICATIONS = Counter(
    "katagate_ingest_recipient_verifications_total",
    "Recipient verifications by outcome (exists, unknown, unverified) and source (probe, cache)",
    ["outcome", "source"],
)
DATA_HELD = Gauge(
    "katagate_ingest_data_held_bytes",
    "DATA bytes reserved by the sessions in DATA, out of data_budget_bytes",
)
DATA_BUDGET = Gauge("katagate_ingest_data_budget_bytes", "The setting data_budget_bytes")

# The reasons REFUSED counts; anything else is a bug.
REASONS = (
    "relay_denied", "bad_address", "address_too_long", "too_many_recipients", "bad_helo",
    "bare_newline", "line_too_long", "too_large", "untaggable_headers", "kafka_unavailable",
    "commit_timeout", "too_many_commands", "too_many_sessions", "timeout", "unknown_recipient",
    "unverified_recipient", "data_budget", "proxy_protocol", "xforward", "draining",
)
