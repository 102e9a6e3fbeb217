"""Bounded fuzzing in CI: each target for a few seconds under atheris, in its own process (a
crash ends the process). `KATAGATE_FUZZ_SECONDS` runs them longer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
SEEDS = Path(__file__).parent / "seeds"
SECONDS = int(os.environ.get("KATAGATE_FUZZ_SECONDS", "3"))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_bounded_fuzz_run_finds_no_crash(target, tmp_path):
    corpus = tmp_path / "corpus"  # libFuzzer adds what it finds to its first folder
    if (SEEDS / target).is_dir():
        shutil.copytree(SEEDS / target, corpus)
    else:
        corpus.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", target, f"-max_total_time={SECONDS}",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1", str(corpus)],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120, check=False,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert not crashes, f"{target}: {crashes}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [line for line in result.stderr.splitlines()
            if line.startswith("stat::number_of_executed_units")]
    assert runs, result.stderr[-2000:]
    assert int(runs[0].split(":")[-1]) > 1000, "the target barely ran"
