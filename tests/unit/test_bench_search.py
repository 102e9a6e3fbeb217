"""The search benchmark works from a checkout: `python -m bench search` on a small store
times every kind of query and writes its report. A smoke test; it never judges a timing."""

from __future__ import annotations

import json
from pathlib import Path

from bench import search


def test_the_search_benchmark_times_every_kind_of_query_and_writes_its_report(
        tmp_path: Path) -> None:
    # When run over 2,000 messages, 3 queries of each kind
    assert search.main(["--messages", "2000", "--queries", "3", "--out", str(tmp_path)]) == 0
    # Then every kind is timed, the store's size and build time reported
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["build"]["messages"] == 2000
    assert report["build"]["events"] > 10_000
    assert report["database_mib"] > 0
    assert {"sender", "recipient_domain", "subject_rare", "combined", "deep_pages",
            "backup_listing", "queue_listing"} <= set(report["queries"])
    assert all(r["queries"] >= 3 and r["p95_ms"] >= r["p50_ms"] > 0
               for r in report["queries"].values())
    assert "| subject_common |" in (tmp_path / "report.md").read_text()
