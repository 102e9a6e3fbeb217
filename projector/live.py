"""The live projection shared by the fold loop and the HTTP threads: the views, where they
stand in the log, and one lock around both."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from katagate.eventlog.health import Condition
from katagate.projector.snapshot import Positions
from katagate.projector.views import Projections


@dataclass
class LiveProjection:
    projections: Projections = field(default_factory=Projections)
    positions: Positions = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    records_read: int = 0  # since this process started (a resume reads only what is new)
    undecodable: int = 0
    caught_up: bool = False
    resumed_from_snapshot: bool = False
    address: tuple[str, int] | None = None  # the HTTP server's, once listening
    metrics_address: tuple[str, int] | None = None  # the metrics listener's, when served
    ends: Positions = field(default_factory=dict)  # last known end offsets, for the lag
    newest_ms: int = 0  # the newest record folded (its Kafka timestamp), for the lag

    def lag_events(self) -> int:
        """Records (and transaction markers) between the positions and the last known ends."""
        return sum(max(0, end - self.positions.get(key, 0)) for key, end in self.ends.items())

    def health(self) -> dict[str, Any]:
        with self.lock:
            return {
                "status": "ok",
                "caught_up": self.caught_up,
                "records_read": self.records_read,
                "undecodable_records": self.undecodable,
                "resumed_from_snapshot": self.resumed_from_snapshot,
                "lag_events": self.lag_events(),
                "positions": [{"topic": t, "partition": p, "next_offset": o}
                              for (t, p), o in sorted(self.positions.items())],
            }


def catch_up(start: Positions, target: Positions, positions: Positions,
             caught_up: bool) -> Condition:
    """Ready once the fold reached the ends the log had when the process started (`target`),
    or read every partition to its end (a last transaction marker is no record to reach);
    before that, "rebuilding" from offset 0 or "catching_up" from a snapshot, with progress."""
    total = done = 0
    for key, end in target.items():
        begun = start.get(key, 0)
        total += max(0, end - begun)
        done += max(0, min(end, positions.get(key, 0)) - begun)
    if caught_up or (target and done >= total):
        return Condition(True, "ready", "caught up with the log as it stood at start")
    state = "rebuilding" if not any(start.values()) else "catching_up"
    if not target:  # its ends unknown: no progress to give
        return Condition(False, state, "reading every partition to its end")
    # Offsets, not records: transaction markers take offsets too.
    return Condition(False, state, f"{done} of {total} offsets read", done / total)
