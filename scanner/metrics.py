"""The scanner's Prometheus metrics; labels are bounded (reasons and reply codes)."""

from prometheus_client import Counter, Gauge

SUBMISSIONS = Counter(
    "katagate_kata_submissions_total", "Scan submissions to the Central Node by outcome",
    ["outcome"],
)
POLLS = Counter(
    "katagate_kata_polls_total", "Batched state polls of the Central Node by outcome", ["outcome"]
)
KATA_REPLIES = Counter(
    "katagate_kata_api_responses_total", "Central Node replies by HTTP code (or failure kind)",
    ["code"],
)
TRANSACTIONS = Counter(
    "katagate_scanner_transactions_total",
    "The scanner's own Kafka transactions by part (scans: submissions and verdicts; lifecycle: "
    "the Central Node connection) and outcome (committed, failed)",
    ["part", "outcome"],
)
PENDING_SCANS = Gauge(
    "katagate_scans_pending", "Messages this scanner instance tracks until their verdict"
)
CENTRAL_NODE_CERT_NOT_AFTER = Gauge(
    "katagate_kata_central_node_cert_not_after_timestamp_seconds",
    "When the Central Node's certificate expires (Unix time), as seen on the last new connection",
)
VERDICT_CACHE_HITS = Counter(
    "katagate_kata_verdict_cache_hits_total",
    "Verdicts reused from an identical message's scan (the verdict cache, or a copy of the same "
    "split message) instead of a Central Node submission",
)
VERDICT_CACHE_ENTRIES = Gauge(
    "katagate_kata_verdict_cache_entries", "Verdicts this scanner instance holds for reuse"
)


def count_reply(outcome: object) -> None:
    """A Central Node reply, by its HTTP code, or by the kind of failure without one."""
    status = getattr(outcome, "status", None)
    KATA_REPLIES.labels(str(status) if status else type(outcome).__name__.lower()).inc()
