"""Prometheus metrics of apply's own work (the mail figures are the projector's, folded from the
log); no labels."""

from prometheus_client import Histogram

REPLY_TO_RECORD = Histogram(
    "katagate_apply_reply_to_record_seconds",
    "A next hop's accepting reply to the acknowledgement of the outcome apply wrote ahead: a "
    "crash within it repeats the delivery",
    buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
             2.5, 5.0),
)
