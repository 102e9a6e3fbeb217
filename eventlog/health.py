"""Liveness and readiness of a stage process: what `/healthz` and `/readyz` answer.

A process has parts: loops (a transactional loop, the scanner's, the projector's fold, ingest's
event loop and writer threads, ...) and conditions (restored, in the group, the Central Node,
the SMTP listener bound). A loop beats each time its poll returns; a part says whether it is
ready and why. `answer` is pure over a snapshot and a monotonic `now`:

- `/healthz` is 503 when a loop has not beaten within `health_stall_s` (plus what the loop
  announced it may block in one bounded call, `blocking_s`): only a restart helps it;
- `/readyz` is 503 while a part is not ready (starting, restoring, rebuilding, not connected)
  or a loop is stalled: the process lives, but should not be counted on yet.

The body is small JSON without mail data: `{"status": ..., "checks": {part: {...}}}`. The HTTP
shell is `eventlog/health_server.py`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

DEFAULT_STALL_S = 30.0
# A stage setting `health_stall_s`: at least a few poll rounds, at most an hour.
StallSeconds = Annotated[float, Field(ge=5, le=3600)]

Probe = Literal["healthz", "readyz"]
PROBES: dict[str, Probe] = {"/healthz": "healthz", "/readyz": "readyz"}


@dataclass(frozen=True)
class Condition:
    ok: bool
    state: str  # one word: starting, restoring, ready, standing_by, rebuilding, connected, ...
    detail: str = ""
    progress: float | None = None  # 0..1, while rebuilding or restoring


@dataclass(frozen=True)
class Snapshot:
    stall_s: float
    beats: Mapping[str, tuple[float, float]]  # part -> (monotonic time, blocking_s allowed)
    conditions: Mapping[str, Condition]


def answer(probe: Probe, snapshot: Snapshot, now: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of a probe: 200 when every part passes, else 503, `status` naming
    the first failing part's state ("stalled" before any other)."""
    checks: dict[str, dict[str, Any]] = {}
    names = sorted(set(snapshot.beats) | (set(snapshot.conditions) if probe == "readyz"
                                          else set()))
    for name in names:
        check: dict[str, Any] = {"ok": True}
        beat = snapshot.beats.get(name)
        if beat is not None:
            at, blocking_s = beat
            silent = max(0.0, now - at)
            check["polled_s_ago"] = round(silent, 1)
            if silent > snapshot.stall_s + blocking_s:
                check.update(ok=False, state="stalled",
                             detail=f"no poll for {silent:.1f} s (health_stall_s "
                                    f"{snapshot.stall_s:g})")
        condition = snapshot.conditions.get(name) if probe == "readyz" else None
        if condition is not None and "state" not in check:
            check.update(ok=condition.ok, state=condition.state)
            if condition.detail:
                check["detail"] = condition.detail
            if condition.progress is not None:
                check["progress"] = round(condition.progress, 3)
        checks[name] = check
    if probe == "readyz" and not checks:  # no part has said anything yet
        return 503, {"status": "starting", "checks": checks}
    failing = [c for c in checks.values() if not c["ok"]]
    if not failing:
        return 200, {"status": "ok", "checks": checks}
    stalled = any(c["state"] == "stalled" for c in failing)
    return 503, {"status": "stalled" if stalled else failing[0]["state"], "checks": checks}


class Health:
    """The parts of one process, written by their threads, read by the HTTP threads."""

    def __init__(self, stall_s: float = DEFAULT_STALL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self.clock = clock
        self._lock = threading.Lock()
        self._beats: dict[str, tuple[float, float]] = {}
        self._conditions: dict[str, Condition] = {}

    def part(self, name: str, *, loop: bool = True, blocking_s: float = 0.0) -> Part:
        """A part that is not ready yet ("starting"); a loop beats from now on, its first
        beat due within `health_stall_s` + `blocking_s` (what it does before its first poll)."""
        part = Part(self, name)
        with self._lock:
            if loop:
                self._beats[name] = (self.clock(), blocking_s)
            self._conditions[name] = Condition(False, "starting")
        return part

    def beat(self, name: str, blocking_s: float = 0.0) -> None:
        with self._lock:
            self._beats[name] = (self.clock(), blocking_s)

    def set(self, name: str, condition: Condition) -> None:
        with self._lock:
            self._conditions[name] = condition

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self.stall_s, dict(self._beats), dict(self._conditions))

    def answer(self, probe: Probe) -> tuple[int, dict[str, Any]]:
        return answer(probe, self.snapshot(), self.clock())


class Part:
    """One part's handle: its thread beats and says how ready it is."""

    def __init__(self, health: Health, name: str) -> None:
        self.health = health
        self.name = name

    def beat(self, blocking_s: float = 0.0) -> None:
        """The loop's poll returned; `blocking_s`: its next step may block that long in one
        bounded call (a Central Node request, say) without counting as stalled."""
        self.health.beat(self.name, blocking_s)

    def ready(self, state: str = "ready", detail: str = "") -> None:
        self.health.set(self.name, Condition(True, state, detail))

    def not_ready(self, state: str, detail: str = "", progress: float | None = None) -> None:
        self.health.set(self.name, Condition(False, state, detail, progress))


async def beating_task(beat: Callable[[], object], every_s: float = 1.0) -> None:
    """Beats for an asyncio event loop (ingest's SMTP, the console's HTTP) while it runs its
    tasks: a coroutine that blocks the loop stops the beats."""
    while True:
        beat()
        await asyncio.sleep(every_s)
