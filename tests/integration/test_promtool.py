"""The deploy files checked by the real promtool (Debian's `prometheus` package, installed by
scripts/system-packages): the scrape configuration, the alert rules, and their unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def promtool() -> str:
    return require_tool("promtool", package="prometheus")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_scrape_configuration_and_its_rule_files_are_valid():
    result = run("check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid prometheus config file syntax" in result.stdout + result.stderr


def test_the_alert_rules_are_valid():
    result = run("check", "rules", "deploy/prometheus/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 17 rules found" in result.stdout + result.stderr


def test_the_alert_rules_pass_their_unit_tests():
    result = run("test", "rules", "deploy/prometheus/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_a_wrong_expectation_fails_the_unit_tests(tmp_path):
    """The unit tests compare what they say: a changed threshold shows up as a failure."""
    (tmp_path / "alerts.yml").write_text(
        (PROMETHEUS / "alerts.yml").read_text().replace("> 60", "> 600"))
    (tmp_path / "alerts_test.yml").write_text((PROMETHEUS / "alerts_test.yml").read_text())
    result = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "KatagateConsumerLagHigh" in result.stdout + result.stderr
