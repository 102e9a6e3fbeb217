"""Stages never import each other (docs/ARCHITECTURE.md): what two stages share lives in
`schemas/` or `eventlog/`, so a stage can be read, deployed and replaced on its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "scanner", "decider", "projector", "console", "audit")
# The folders installed as katagate's subpackages (katagate/<name> links to them).
SUBPACKAGES = (*STAGES, "eventlog", "schemas", "admin", "kata_emulator", "demo_sink", "access")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def imported_packages(path: Path) -> set[str]:
    """The katagate subpackages a file imports: `katagate.ingest.x` counts as `ingest`."""
    return {name.removeprefix("katagate.").split(".")[0] for name in imported_modules(path)
            if name.startswith("katagate.")}


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stage(stage):
    crossing = {
        f"{path.relative_to(ROOT)} imports {other}"
        for path in sorted((ROOT / stage).rglob("*.py"))
        for other in imported_packages(path) & set(STAGES) - {stage}
    }
    assert not crossing, sorted(crossing)


def test_every_import_of_a_subpackage_goes_through_the_katagate_namespace():
    # A bare `import schemas` would load a second copy of the module from the checkout (its
    # classes unequal to katagate.schemas'), and fails in an installed wheel.
    files = sorted({path.resolve() for folder in (*SUBPACKAGES, "katagate", "tests", "bench")
                    for path in (ROOT / folder).rglob("*.py")})
    bare = {f"{path.relative_to(ROOT)} imports {name}" for path in files
            for name in imported_modules(path) if name.split(".")[0] in SUBPACKAGES}
    assert len(files) > 300
    assert not bare, sorted(bare)


def test_every_child_process_runs_a_module_of_the_katagate_namespace():
    # `python -m kata_emulator` runs only from a checkout; installed, it is katagate.kata_emulator
    started = re.compile(r"""(?:python_module\(|["']-m["'],\s*)["']([\w.]+)["']""")
    files = sorted({path.resolve() for folder in (*SUBPACKAGES, "katagate", "tests", "bench")
                    for path in (ROOT / folder).rglob("*.py")})
    bare = {f"{path.relative_to(ROOT)} runs -m {name}" for path in files
            for name in started.findall(path.read_text()) if name.split(".")[0] in SUBPACKAGES}
    assert not bare, sorted(bare)
