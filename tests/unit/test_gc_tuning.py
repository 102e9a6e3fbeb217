"""A long-running stage's garbage collector (katagate/gc_tuning.py): set once it starts, in a
process of its own here (the settings are the interpreter's, not this test's)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import argparse, gc, json
from katagate import gc_tuning
from katagate.process import stop_on_signals
before = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
stop_on_signals(argparse.Namespace(log_format=None, log_level=None))
after = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
class Node:
    pass
a, b = Node(), Node()  # a cycle made after the freeze: still the collector's to free
a.other, b.other = b, a
del a, b
found = gc.collect()
print(json.dumps({"before": before, "after": after, "collected": found,
                  "young": gc_tuning.YOUNG_THRESHOLD}))
"""


def test_given_a_stage_that_starts_then_its_collector_is_set_and_its_startup_frozen() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=60, check=True)
    seen = json.loads(result.stdout)
    assert seen["before"]["threshold"][0] == 700  # CPython's default, as it starts
    assert seen["after"]["threshold"] == [seen["young"], *seen["before"]["threshold"][1:]]
    assert seen["before"]["frozen"] == 0
    assert seen["after"]["frozen"] > 10_000  # the modules and settings
    assert seen["collected"] >= 2
