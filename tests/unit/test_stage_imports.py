"""Stages never import each other (docs/ARCHITECTURE.md): what two stages share lives in
`schemas/` or `eventlog/`, so a stage can be read, deployed and replaced on its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "scanner", "decider", "projector", "console", "audit")


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stage(stage):
    crossing = {
        f"{path.relative_to(ROOT)} imports {other}"
        for path in sorted((ROOT / stage).rglob("*.py"))
        for other in imported_packages(path) & set(STAGES) - {stage}
    }
    assert not crossing, sorted(crossing)
