"""The projection as Prometheus metrics: the mail and KATA figures of deploy/METRICS.md, read
from the live views when scraped. They are folds of the log, so a restart or a rebuild gives
the same numbers and counters never go back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, get_args

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from katagate.projector import connection, counters, quarantine
from katagate.projector.live import LiveProjection
from katagate.schemas import (
    ActionDecided,
    ActionReason,
    ConnectionState,
    DenialReason,
    DetectType,
    QuarantineReleased,
    ScanState,
)

STATES: tuple[str, ...] = get_args(ConnectionState)
# Every label value a counter can take starts at 0, so the first occurrence is an increase
# that rate() and increase() can see (a series born at 3 would hide its first three).
_RELEASE_CAUSES = get_args(QuarantineReleased.model_fields["cause"].annotation)
_SKIPPED = tuple(r for r in get_args(ActionReason)
                 if r not in ("detected", "not_detected", "deleted_by_admin"))
# metric name (without katagate_ and _total), counters group, label name, its values, help
LABELLED: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    ("quarantine_denials", "denial_reasons", "reason", get_args(DenialReason),
     "Admissions to the KATA Quarantine refused"),
    ("quarantine_releases", "release_causes", "cause", _RELEASE_CAUSES,
     "KATA Quarantine slots freed"),
    ("detects", "detect_types", "type", get_args(DetectType), "Detects in KATA verdicts"),
    ("late_verdicts", "late_verdict_states", "state", get_args(ScanState),
     "Verdicts that came after the message had gone on"),
    ("actions", "actions", "action", get_args(ActionDecided.model_fields["action"].annotation),
     "Decisions: deliver, delete or reject"),
    ("skipped", "skipped_reasons", "reason", _SKIPPED, "Decisions of the product's Skipped"),
    ("delivered_without_verdict", "without_verdict", "reason", _SKIPPED,
     "Messages delivered to the next hop without a usable verdict"),
    ("deliveries", "deliveries", "outcome", ("delivered", "deferred", "failed"),
     "Delivery attempts' outcomes"),
    ("ndr", "ndr", "outcome", ("sent", "suppressed"), "Non-delivery reports sent or suppressed"),
)


class ProjectionCollector:
    def __init__(self, live: LiveProjection, clock: Callable[[], float] = time.time) -> None:
        self._live = live
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        with self._live.lock:
            views = self._live.projections
            counts = counters.render(views.counters)
            usage = quarantine.render(views.quarantine)
            window = connection.render(views.connection)
            lag = self._live.lag_events()
            newest_ms = self._live.newest_ms
            records = self._live.records_read
        yield from _counters(counts)
        yield from _quarantine(usage)
        yield from _connection(window)
        yield _gauge("projection_lag_records", "Records between the projection and the end",
                     lag)
        age = max(0.0, self._clock() - newest_ms / 1000) if lag and newest_ms else 0.0
        yield _gauge("projection_lag_seconds",
                     "Age of the newest record folded while behind; 0 when caught up", age)
        total = CounterMetricFamily("katagate_projection_records",
                                    "Records folded since the projector started")
        total.add_metric([], records)
        yield total


def _gauge(name: str, help_: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"katagate_{name}", help_, value=value)


def _counter(name: str, help_: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"katagate_{name}", help_, value=value)


def _counters(counts: dict[str, Any]) -> Iterator[Metric]:
    yield _counter("messages_received", "Messages accepted by ingest",
                   counts["messages"].get("received", 0))
    yield _counter("quarantine_admissions", "Messages admitted to the KATA Quarantine",
                   counts["quarantine"].get("admitted", 0))
    states = dict(counts["verdict_states"])
    yield _counter("scan_timeouts", "Response timeouts: no verdict in time",
                   states.pop("response_timeout", 0))
    verdicts = CounterMetricFamily("katagate_verdicts", "Verdicts from KATA", labels=["state"])
    for state in sorted({*get_args(ScanState), *states}):
        verdicts.add_metric([state], states.get(state, 0))
    yield verdicts
    for name, group, label, known, help_ in LABELLED:
        family = CounterMetricFamily(f"katagate_{name}", help_, labels=[label])
        seen = counts[group]
        for key in sorted({*known, *seen}):
            family.add_metric([key], seen.get(key, 0))
        yield family
    yield _counter("messages_discarded", "Messages deleted (KATA detect or administrator)",
                   counts["outcomes"].get("discarded", 0))
    for name, help_ in (("scan_duration_seconds", "From submission to KATA to its verdict"),
                        ("delivery_latency_seconds", "From received to delivered")):
        histogram = counts["histograms"][name]
        cumulative, buckets = 0, []
        for bound, count in zip(histogram["le"], histogram["counts"], strict=True):
            cumulative += count
            buckets.append((str(float(bound)) if bound != "+Inf" else "+Inf", cumulative))
        timing = HistogramMetricFamily(f"katagate_{name}", help_)
        timing.add_metric([], buckets, histogram["sum_seconds"])
        yield timing


def _quarantine(usage: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("quarantine_bytes_in_use", "Bytes of messages in the KATA Quarantine",
                 usage["bytes_in_use"])
    yield _gauge("quarantine_messages_in_use", "Messages in the KATA Quarantine",
                 usage["messages_in_use"])
    yield _gauge("quarantine_limit_bytes", "The KATA Quarantine's maximum size",
                 usage["limit_bytes"])
    yield _gauge("quarantine_limit_messages", "The KATA Quarantine's maximum number of messages",
                 usage["limit_messages"])
    per_rule = GaugeMetricFamily("katagate_quarantine_rule_messages_in_use",
                                 "Messages in the KATA Quarantine, per rule", labels=["rule"])
    for rule, held in sorted(usage["per_rule"].items()):
        per_rule.add_metric([rule], held["messages_in_use"])
    yield per_rule


def _connection(window: dict[str, Any]) -> Iterator[Metric]:
    state = GaugeMetricFamily("katagate_connection_state",
                              "The Central Node connection: 1 for the current state",
                              labels=["state"])
    for name in STATES:
        state.add_metric([name], 1 if window["connection_state"] == name else 0)
    yield state
    since = window["since"]
    yield _gauge("connection_state_since_timestamp_seconds",
                 "When the current connection state began (Unix time)",
                 0 if since is None else _unix(since))
    yield _gauge("kata_protection_enabled", "The global KATA protection switch",
                 1 if window["kata_protection_enabled"] else 0)


def _unix(canonical: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(canonical.replace("Z", "+00:00")).timestamp()


def registry_for(live: LiveProjection) -> CollectorRegistry:
    """The projector's own registry: these metrics and the process's CPU and memory."""
    registry = CollectorRegistry()
    registry.register(ProjectionCollector(live))
    ProcessCollector(registry=registry)
    return registry
