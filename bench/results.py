"""Where a benchmark writes its figures: a folder per run under bench/results/, holding
report.json (every figure) and report.md (the tables a reader wants)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def run_folder(kind: str, out: Path | None = None) -> Path:
    """`out`, or bench/results/<kind>-<time>/, made."""
    folder = out or RESULTS / f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_report(folder: Path, report: dict[str, Any], title: str, text: str) -> None:
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(f"# {title}\n\n{text}")
