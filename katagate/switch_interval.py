"""The interpreter's thread switch interval, set for ingest.

Ingest's SMTP sessions run on one asyncio loop; its writers' threads (one producing, one
polling the producer for acknowledgements, per writer) share the interpreter with it. A thread
that wants the GIL while another runs Python waits until the holder blocks or the switch
interval passes: 5 ms by default, a long time for a loop that answers 50 sessions at about
1 ms of work a message. At 1 ms the loop gets the GIL back sooner.

Measured with `python -m bench.mailpath --messages 3000 --sizes 4096` (ingest with the later
stages paused, against the bare sink), six alternated pairs: ingest ÷ the bare sink at 50
connections 0.46 to 0.52 (mean 0.50) against 0.41 to 0.55 (mean 0.46), better in five pairs of six;
at 10 connections and end to end no difference beyond the noise. The p99 at 50 connections
moved less than its noise (median +45.0 ms over the bare sink against +46.5). The other
stages keep CPython's default: their threads are loops that block between batches.
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL_S = 0.001
STAGES = frozenset({"ingest"})


def for_a_stage(stage: str) -> None:
    """Called once, before the stage starts its threads."""
    if stage in STAGES:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
