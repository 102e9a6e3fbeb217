"""Which instance of a Rig owns the quarantine ledger or the Central Node connection
lifecycle, and when another took it over: read from the ledger topic (its events name their
producer) and from the scanners' logs (the owner says so when it becomes one). Shared by the
cluster failover test and the failover benchmark."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from katagate.schemas import decode_event
from tests.faults.harness import Rig
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import wait_for

_OWNER_LINE = re.compile(r"^(\S+ \S+) INFO \S+ this instance is now the lifecycle owner$",
                         re.MULTILINE)


def events(rig: Rig, topic: str) -> list[Any]:
    # Read while a node is dead: a controller quorum slow to settle has kept the cluster
    # from answering for over 30 s on this loaded machine.
    return [decode_event(r.value)
            for r in read_all(rig.kafka, topic, timeout_s=120)]


def stage_of(instance: str) -> str:
    """The Rig's stage name for a producer instance id: "decider-0" is "decider"."""
    stage, n = instance.rsplit("-", 1)
    return stage if n == "0" else instance


def other(stage: str) -> str:
    """The other of two instances: "decider" and "decider-1"."""
    return stage.removesuffix("-1") if stage.endswith("-1") else f"{stage}-1"


def ledger_owner(rig: Rig) -> str:
    # The owner is known once the ledger holds a committed event: right after a node died,
    # the first admissions may still wait for their transaction coordinator to move.
    ledger = wait_for(lambda: events(rig, rig.names.quarantine), 120, "a ledger event")
    return stage_of(ledger[-1].producer.instance)


def ledger_taken_over(rig: Rig, dead: str, since: float) -> float | None:
    """Seconds from `since` (time.time()) to the first ledger event of another instance."""
    for event in events(rig, rig.names.quarantine):
        if (event.occurred_at.timestamp() > since
                and stage_of(event.producer.instance) != dead):
            return float(event.occurred_at.timestamp() - since)
    return None


def _owner_lines(rig: Rig, stage: str) -> list[float]:
    text = rig.stages[stage].log.read_text(errors="replace")
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for stamp in _OWNER_LINE.findall(text)]


def lifecycle_owner(rig: Rig) -> str:
    latest = {name: max(_owner_lines(rig, name), default=0.0)
              for name in ("scanner", "scanner-1")}
    return max(latest, key=lambda name: latest[name])


def lifecycle_taken_over(rig: Rig, dead: str, since: float) -> float | None:
    later = [t for t in _owner_lines(rig, other(dead)) if t > since]
    return later[0] - since if later else None
