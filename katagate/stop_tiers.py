"""The order `katagate up` stops its children in, each tier waited for before the next: ingest
first (it drains its SMTP sessions, so no new mail comes in), then the stages behind it (the
decider finishes the deliveries in flight and commits), then the demo sink and the emulator
(they answer the decider until it is done), the local broker last. With the next hop stopped
after the decider, no message is stored there but left unanswered, which the next start would
deliver again."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_DRAIN_S = 30.0
MARGIN_S = 10.0  # a process's own exit after its drain: flushing, closing the producer
# Ingest, at its drain's end, still answers a message being written: within its commit bound
# (ingest's commit_timeout_s, 10 s by default).
INGEST_COMMIT_S = 10.0
DEMO_STOP_S = 10.0  # the sink and the emulator: sessions inside DATA finish
BROKER_STOP_S = 60.0  # LocalBroker.stop's own wait before it kills

STAGES = ("scanner", "decider", "projector", "console", "audit")
DEMO = ("sink", "kata-emulator")


@dataclass(frozen=True)
class Tier:
    names: tuple[str, ...]
    timeout_s: float


def drain_s(document: Mapping[str, Any], section: str,
            environ: Mapping[str, str] = os.environ) -> float:
    """A stage's `drain_timeout_s` as the stage reads it (its environment variable over the
    file), else the default; a value that is not a number is left to the stage to refuse."""
    raw = environ.get(f"KATAGATE_{section.upper()}_DRAIN_TIMEOUT_S")
    if raw is None:
        raw = (document.get(section) or {}).get("drain_timeout_s")
    try:
        value = float(raw) if raw is not None else DEFAULT_DRAIN_S
    except (TypeError, ValueError):
        return DEFAULT_DRAIN_S
    return value if value >= 0 else DEFAULT_DRAIN_S


def plan(ingest_drain_s: float, decider_drain_s: float) -> list[Tier]:
    return [Tier(("ingest",), ingest_drain_s + INGEST_COMMIT_S + MARGIN_S),
            Tier(STAGES, decider_drain_s + MARGIN_S),
            Tier(DEMO, DEMO_STOP_S)]


def plan_for(document: Mapping[str, Any], environ: Mapping[str, str] = os.environ
             ) -> list[Tier]:
    return plan(drain_s(document, "ingest", environ), drain_s(document, "decider", environ))


def longest_stop_s(tiers: list[Tier]) -> float:
    """How long a stop can take at most: every tier's time, then the broker's."""
    return sum(t.timeout_s for t in tiers) + BROKER_STOP_S + MARGIN_S
