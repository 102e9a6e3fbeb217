"""The configuration at every version: a message keeps the settings and rules it was received
under, even when an administrator changes them while it waits for its verdict."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from katagate.schemas import ControlState, Event, evolve_control


@dataclass(frozen=True)
class ControlHistory:
    current: ControlState = field(default_factory=ControlState)
    versions: tuple[int, ...] = ()
    states: tuple[ControlState, ...] = ()

    def at(self, version: int) -> ControlState:
        """The configuration as it was at `version` (the newest one if it is not known yet)."""
        index = bisect.bisect_right(self.versions, version) - 1
        if index < 0:
            return ControlState()  # received before anything was configured
        if index == len(self.states) - 1:
            return self.current
        return self.states[index]


def evolve_history(history: ControlHistory, event: Event) -> ControlHistory:
    state = evolve_control(history.current, event)
    if state is history.current:
        return history
    if state.version != history.current.version or not history.versions:
        return ControlHistory(state, (*history.versions, state.version),
                              (*history.states, state))
    # Same version (e.g. a connection state change): replace the newest snapshot.
    return ControlHistory(state, history.versions, (*history.states[:-1], state))
