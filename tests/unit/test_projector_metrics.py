"""The projector's Prometheus metrics: the views as the catalogue (deploy/METRICS.md) names
them, with values a scrape can be checked against."""

from __future__ import annotations

import re
from functools import reduce
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from katagate.projector.live import LiveProjection
from katagate.projector.metrics import registry_for
from katagate.projector.views import Projections, evolve
from tests.unit.test_projector_flows import all_flows

CATALOGUE = Path(__file__).resolve().parents[2] / "deploy" / "METRICS.md"


def scraped(messages: int = 12) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    live = LiveProjection(projections=reduce(evolve, (e for _t, e in all_flows(messages)),
                                             Projections()))
    text = generate_latest(registry_for(live)).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_counts_match_the_flows() -> None:
    # Given two messages of every scenario folded
    values = scraped(12)
    # Then the counters say what happened, by label
    assert values[("katagate_messages_received_total", ())] == 12
    assert values[("katagate_actions_total", (("action", "deliver"),))] == 8
    assert values[("katagate_actions_total", (("action", "reject"),))] == 2
    assert values[("katagate_verdicts_total", (("state", "detect"),))] == 4
    assert values[("katagate_scan_timeouts_total", ())] == 2
    assert values[("katagate_quarantine_denials_total", (("reason", "count_limit"),))] == 2
    assert values[("katagate_quarantine_releases_total", (("cause", "action_applied"),))] == 10
    assert values[("katagate_skipped_total", (("reason", "timeout"),))] == 2
    assert values[("katagate_delivered_without_verdict_total", (("reason", "timeout"),))] == 2
    assert values[("katagate_deliveries_total", (("outcome", "delivered"),))] == 6
    assert values[("katagate_messages_discarded_total", ())] == 2
    assert values[("katagate_ndr_total", (("outcome", "sent"),))] >= 2


def test_scan_durations_and_delivery_latencies_are_histograms() -> None:
    values = scraped(12)
    # Every message with a verdict (8 of 12) was submitted first: one duration each
    assert values[("katagate_scan_duration_seconds_count", ())] == 8
    assert values[("katagate_scan_duration_seconds_bucket", (("le", "+Inf"),))] == 8
    assert values[("katagate_scan_duration_seconds_sum", ())] > 0
    # One latency per message delivered
    assert values[("katagate_delivery_latency_seconds_count", ())] == 6


def test_quarantine_and_connection_gauges() -> None:
    values = scraped(12)
    assert values[("katagate_quarantine_messages_in_use", ())] == 0
    assert values[("katagate_quarantine_limit_messages", ())] == 100
    assert values[("katagate_connection_state", (("state", "connected"),))] == 1
    assert values[("katagate_connection_state", (("state", "unreachable"),))] == 0
    assert values[("katagate_connection_state_since_timestamp_seconds", ())] > 1.7e9
    assert values[("katagate_kata_protection_enabled", ())] == 1
    assert values[("katagate_projection_lag_records", ())] == 0
    assert ("process_resident_memory_bytes", ()) in values


def test_every_projector_metric_of_the_catalogue_is_exported() -> None:
    section = CATALOGUE.read_text().split("## Stage plumbing")[0]
    listed = set(re.findall(r"`(katagate_[a-z_]+)`", section))
    exported = {name for name, _labels in scraped(12)}
    exported |= {re.sub(r"_(bucket|sum|count)$", "", name) for name in exported}
    assert listed <= exported, sorted(listed - exported)


def test_every_known_label_value_starts_at_zero() -> None:
    # Given nothing folded yet, every series a dashboard rates already exists at 0, so its
    # first increase is seen
    values = scraped(0)
    assert values[("katagate_actions_total", (("action", "reject"),))] == 0
    assert values[("katagate_verdicts_total", (("state", "detect"),))] == 0
    assert values[("katagate_detects_total", (("type", "sb"),))] == 0
    assert values[("katagate_delivered_without_verdict_total", (("reason", "timeout"),))] == 0
    assert values[("katagate_quarantine_releases_total", (("cause", "deleted_by_admin"),))] == 0
