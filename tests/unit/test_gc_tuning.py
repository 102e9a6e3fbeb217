"""The garbage collector of the stages that read the log (katagate/gc_tuning.py) and ingest's
thread switch interval (katagate/switch_interval.py): set once the stage starts, in a process
of its own here (the settings are the interpreter's, not this test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

PROBE = """
import argparse, gc, json, sys
from katagate import gc_tuning
from katagate.process import stop_on_signals
before = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
switch_before = sys.getswitchinterval()
stop_on_signals(argparse.Namespace(log_format=None, log_level=None))
after = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
switch_after = sys.getswitchinterval()
class Node:
    pass
a, b = Node(), Node()  # a cycle made after the freeze: still the collector's to free
a.other, b.other = b, a
del a, b
print(json.dumps({"before": before, "after": after, "collected": gc.collect(),
                  "switch_before": switch_before, "switch_after": switch_after,
                  "young": gc_tuning.YOUNG_THRESHOLD}))
"""


def started(stage: str) -> Any:
    """What a process whose first argument is `stage` (as `katagate STAGE run`) has set."""
    result = subprocess.run([sys.executable, "-c", PROBE, stage, "run"], capture_output=True,
                            text=True, timeout=60, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize("stage", ["decider"])  # each process costs 2 s
def test_given_a_stage_that_reads_the_log_then_its_collector_is_set_and_startup_frozen(
        stage: str) -> None:
    seen = started(stage)
    before, after = seen["before"], seen["after"]
    assert before["threshold"] == [700, 10, 10]  # CPython's defaults, as it starts
    assert after["threshold"] == [seen["young"], 10, 10]
    assert before["frozen"] == 0
    assert after["frozen"] > 10_000  # the modules and settings
    assert seen["collected"] >= 2
    assert seen["switch_after"] == seen["switch_before"] == 0.005  # CPython's default


def test_given_ingest_then_it_keeps_cpython_s_collector_and_switches_threads_every_ms(
        ) -> None:
    seen = started("ingest")
    assert seen["after"] == seen["before"] == {"threshold": [700, 10, 10], "frozen": 0}
    assert seen["switch_before"] == 0.005
    assert seen["switch_after"] == 0.001
