"""The deploy files against the metric catalogue (deploy/METRICS.md), without a network: the
dashboard is well formed, queries only metrics some stage exports, with their labels and label
values, rates only counters; every alert is complete and unit-tested; the README is current."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from katagate import dashboard_cmd

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "katagate.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
SCRAPE = DEPLOY / "prometheus" / "prometheus.yml"

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count", "_created")
# Labels Prometheus adds at scrape time, and the bucket bound of histograms.
TARGET_LABELS = {"job", "instance"}
NAME = re.compile(r"\b((?:katagate|process)_[a-z_]+|up)\b(?!\s*\()")
ROW = re.compile(r"^\|\s*`((?:katagate)_[a-z_]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|", re.MULTILINE)
LABEL_WITH_VALUES = re.compile(r"`(\w+)`(?:\s*\(([^)]*)\))?")


class Metric:
    def __init__(self, kind: str, labels: dict[str, set[str] | None]) -> None:
        self.kind = kind
        self.labels = labels  # label -> its documented values (None: not enumerated)


def catalogue() -> dict[str, Metric]:
    text = (DEPLOY / "METRICS.md").read_text()
    metrics: dict[str, Metric] = {}
    for name, kind, labels_cell in ROW.findall(text):
        labels: dict[str, set[str] | None] = {}
        for label, values in LABEL_WITH_VALUES.findall(labels_cell):
            enumerated = {v.strip() for v in values.split(",")} if values else set()
            # "(as skipped)" and the like refer to another row: not an enumeration.
            labels[label] = enumerated if enumerated and all(
                re.fullmatch(r"[a-z0-9_]+", v) for v in enumerated) else None
        metrics[name] = Metric(kind, labels)
    for name in re.findall(r"`(process_[a-z_]+)`", text):
        metrics[name] = Metric("counter" if name.endswith("_total") else "gauge", {})
    metrics["up"] = Metric("gauge", {})
    return metrics


CATALOGUE = catalogue()


def resolve(name: str) -> tuple[str, Metric] | None:
    """The catalogue entry a series name belongs to (a histogram's _bucket/_sum/_count too)."""
    if name in CATALOGUE:
        return name, CATALOGUE[name]
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and CATALOGUE.get(base) and CATALOGUE[base].kind == "histogram":
            return base, CATALOGUE[base]
    return None


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for _, row in dashboard_cmd.rows(dashboard()) for p in row]


def dashboard_queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def all_queries() -> list[tuple[str, str]]:
    return dashboard_queries() + [(r["alert"], r["expr"]) for r in alert_rules()]


def test_the_catalogue_parses_into_the_metrics_it_lists():
    assert CATALOGUE["katagate_scan_duration_seconds"].kind == "histogram"
    assert CATALOGUE["katagate_deliveries_total"].labels == {
        "outcome": {"delivered", "deferred", "failed"}}
    assert CATALOGUE["katagate_dead_lettered_total"].labels == {"stage": None, "error": None}
    assert "process_resident_memory_bytes" in CATALOGUE
    assert len([n for n in CATALOGUE if n.startswith("katagate_")]) >= 40


# -- the dashboard ----------------------------------------------------------------------------

def test_the_dashboard_is_a_grafana_dashboard_on_a_templated_prometheus():
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["uid"]
    assert board["title"]
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_every_panel_has_a_title_a_known_unit_a_description_and_queries():
    for panel in panels():
        title = panel.get("title", "")
        assert title, f"a panel without a title: {panel['id']}"
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit in dashboard_cmd.UNITS, f"{title}: unit {unit!r} is not a known Grafana unit"
        assert panel.get("description"), f"{title}: no description"
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", title
        assert panel["targets"], f"{title}: no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{title}: an empty query"
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", title
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{title}: refIds repeat"


def test_panels_do_not_overlap_and_fit_the_grid():
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken.get((x, y))}"
                taken[(x, y)] = panel["title"]


def test_the_dashboard_answers_the_operators_questions():
    titles = [title.lower() for title, _ in dashboard_cmd.rows(dashboard())]
    for words in ("mail flow", "scans", "quarantine", "without a verdict", "actions",
                  "central node", "keeping up", "errors", "processes"):
        assert any(words in t for t in titles), f"no row about {words!r}: {titles}"
    exprs = "\n".join(e for _, e in dashboard_queries())
    for p in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({p}, max by (le) (rate(katagate_scan_duration_seconds_bucket"\
            in exprs
    for needed in ("katagate_quarantine_limit_bytes", "katagate_quarantine_limit_messages",
                   "katagate_delivered_without_verdict_total", "katagate_skipped_total",
                   "katagate_consumer_lag_seconds", "katagate_connection_state",
                   "katagate_kata_api_responses_total", "process_cpu_seconds_total",
                   "process_resident_memory_bytes"):
        assert needed in exprs, needed


# -- queries against the catalogue -------------------------------------------------------------

@pytest.mark.parametrize(("where", "expr"), all_queries())
def test_every_metric_a_query_names_is_in_the_catalogue(where, expr):
    names = set(NAME.findall(expr))
    assert names, f"{where}: no metric in {expr}"
    unknown = sorted(n for n in names if resolve(n) is None)
    assert not unknown, f"{where}: {unknown} are not in deploy/METRICS.md"


@pytest.mark.parametrize(("where", "expr"), all_queries())
def test_rates_are_taken_of_counters_only(where, expr):
    for name in re.findall(r"\b(?:rate|increase|irate)\(\s*([a-z_]+)", expr):
        resolved = resolve(name)
        assert resolved is not None, name
        base, metric = resolved
        counts = metric.kind == "counter" or (metric.kind == "histogram" and name != base)
        assert counts, f"{where}: rate of the {metric.kind} {name}"


@pytest.mark.parametrize(("where", "expr"), all_queries())
def test_selectors_and_groupings_use_the_metrics_labels(where, expr):
    used: set[str] = set()
    for name, matchers in re.findall(r"\b([a-z_]+)\{([^}]*)\}", expr):
        resolved = resolve(name)
        assert resolved is not None, f"{where}: {name}"
        metric = resolved[1]
        for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
            if label in TARGET_LABELS:
                continue
            assert label in metric.labels, f"{where}: {name} has no label {label!r}"
            documented = metric.labels[label]
            if documented and op in ("=", "=~"):
                values = set(value.split("|")) if op == "=~" else {value}
                assert values <= documented, f"{where}: {name}{{{label}}}: {values - documented}"
    for name in NAME.findall(expr):
        resolved = resolve(name)
        if resolved:
            used |= set(resolved[1].labels)
            if resolved[1].kind == "histogram":
                used.add("le")
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        for label in (g.strip() for g in group.split(",") if g.strip()):
            assert label in used | TARGET_LABELS, f"{where}: no metric here has {label!r}"


def projector_figures() -> set[str]:
    """The metrics of METRICS.md's projector section: folded from the whole log by every
    projector instance."""
    text = (DEPLOY / "METRICS.md").read_text()
    section = text.split("## Mail and KATA figures")[1].split("\n## ")[0]
    return set(re.findall(r"^\|\s*`(katagate_[a-z_]+)`", section, re.MULTILINE))


def sums(expr: str) -> list[tuple[str, str]]:
    """Each `sum` of a query: its `by` labels ("" without) and its argument."""
    found = []
    for match in re.finditer(r"\bsum\s*(?:by\s*\(([^)]*)\))?\s*\(", expr):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        found.append((match.group(1) or "", expr[match.end():end - 1]))
    return found


def test_the_projector_figures_are_those_the_dashboard_reads_most():
    assert {"katagate_messages_received_total", "katagate_deliveries_total",
            "katagate_quarantine_rule_messages_in_use"} <= projector_figures()


@pytest.mark.parametrize(("where", "expr"), all_queries())
def test_no_query_sums_a_projector_figure_over_its_instances(where, expr):
    """Given two projector instances (compose and Kubernetes run two), each exports the figure
    of the whole log: a sum over them doubles it. So a sum over a projector figure keeps the
    instances apart (`by (..., instance)`, as the alerts do), and the dashboard takes max."""
    figures = projector_figures()
    for by, argument in sums(expr):
        names = {re.sub(r"_(bucket|sum|count)$", "", n) for n in NAME.findall(argument)}
        if names & figures:
            labels = {label.strip() for label in by.split(",")}
            assert "instance" in labels, f"{where}: sums {sorted(names & figures)} over instances"


# -- alert rules and their tests --------------------------------------------------------------

def test_every_alert_has_a_severity_a_summary_and_a_description():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]


def test_the_alerts_cover_what_the_issue_asks():
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    joined = "\n".join(exprs.values())
    for needed in ('katagate_connection_state{state="connected"}',
                   "katagate_quarantine_bytes_in_use / katagate_quarantine_limit_bytes",
                   "katagate_quarantine_messages_in_use / katagate_quarantine_limit_messages",
                   "katagate_scan_timeouts_total", "katagate_consumer_lag_seconds",
                   'katagate_deliveries_total{outcome="failed"}', "katagate_dead_lettered_total",
                   "up{", "katagate_kata_central_node_cert_not_after_timestamp_seconds"):
        assert needed in joined, needed
    fors = {r["alert"]: r.get("for") for r in alert_rules()}
    assert fors["KatagateCentralNodeNotConnected"] == "5m"
    assert fors["KatagateConsumerLagHigh"] == "5m"


def test_the_certificate_warns_at_14_days_and_is_critical_at_3():
    rules = {r["alert"]: r for r in alert_rules()}
    warning = rules["KatagateCentralNodeCertificateExpiring"]
    critical = rules["KatagateCentralNodeCertificateExpiresSoon"]
    assert warning["labels"]["severity"] == "warning"
    assert "< 14 * 86400" in warning["expr"]
    assert ">= 3 * 86400" in warning["expr"]  # one alert at a time: the critical one below
    assert critical["labels"]["severity"] == "critical"
    assert "< 3 * 86400" in critical["expr"]


def test_the_checkpointer_is_overdue_relative_to_its_own_interval():
    expr = {r["alert"]: r["expr"] for r in alert_rules()}["KatagateAuditCheckpointOverdue"]
    assert "katagate_audit_last_checkpoint_timestamp_seconds" in expr
    assert "2 * katagate_audit_checkpoint_every_seconds" in expr
    assert "katagate_audit_uncovered_records > 0" in expr


def test_every_alert_is_unit_tested_firing_and_not_firing():
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_the_scrape_configuration_has_every_stage_and_the_rules():
    config = yaml.safe_load(SCRAPE.read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"katagate-ingest", "katagate-scanner", "katagate-decider",
            "katagate-projector"} <= set(jobs)
    ports = {name: job["static_configs"][0]["targets"][0].rsplit(":", 1)[1]
             for name, job in jobs.items()}
    # Each on its own metrics listener, as `katagate up` assigns them (never the projector's
    # views or the console's pages).
    assert (ports["katagate-ingest"], ports["katagate-scanner"], ports["katagate-decider"],
            ports["katagate-projector"], ports["katagate-console"]) == (
        "9101", "9102", "9103", "9104", "9105")


def test_the_grafana_provisioning_files_parse():
    sources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["isDefault"]
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/katagate.yml").read_text())
    assert providers["providers"][0]["type"] == "file"


# -- the README's view of the dashboard ----------------------------------------------------------

def test_the_readme_operations_section_is_current():
    readme = (ROOT / "README.md").read_text()
    assert dashboard_cmd.is_current(readme, dashboard()), (
        "README.md's dashboard section is stale: run `katagate dashboard write`")


def test_the_rendering_names_every_panel_unit_and_query():
    rendered = dashboard_cmd.describe(dashboard())
    for panel in panels():
        assert f"**{panel['title']}**" in rendered
        assert f"`{panel['fieldConfig']['defaults']['unit']}`" in rendered
        for target in panel["targets"]:
            assert f"`{target['expr']}`" in rendered


def test_a_changed_dashboard_makes_the_section_stale():
    readme = (ROOT / "README.md").read_text()
    board = dashboard()
    board["panels"][1]["title"] = "Something else"
    assert not dashboard_cmd.is_current(readme, board)
    with pytest.raises(dashboard_cmd.DashboardSectionMissing):
        dashboard_cmd.with_section("# no section\n", "x")
