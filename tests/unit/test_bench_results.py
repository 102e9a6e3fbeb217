"""A benchmark run's folder (bench/results.py): both files, the report whole in JSON and the
reader's text under its title."""

from __future__ import annotations

import json

from bench.results import run_folder, write_report


def test_a_run_writes_its_figures_and_its_tables_into_the_folder_given(tmp_path):
    folder = run_folder("budget", tmp_path / "run")
    write_report(folder, {"messages": 3, "when": "now"}, "Per-message budget, now", "| a |\n")
    assert json.loads((folder / "report.json").read_text()) == {"messages": 3, "when": "now"}
    assert (folder / "report.md").read_text() == "# Per-message budget, now\n\n| a |\n"
