"""When `katagate up` restarts a child that died, after how long, and when it gives up: pure
over the child's record and the time, so the shell (katagate/up_watch.py) only acts on it.

Backoff doubles from 1 s to at most 30 s. It starts again at 1 s once a child has stayed up
`STEADY_S` (60 s): a child that dies at once after each start keeps doubling, while one that
ran a minute died for a new reason and is back quickly. 60 s is twice the longest backoff, so
a child that dies right after each 30 s pause never looks steady, and longer than a stage's
start (the broker reached, the state restored). Giving up is apart from the backoff: more than
`limit` failures within `window_s`, whatever the backoff was.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STEADY_S = 60.0


@dataclass(frozen=True)
class RestartPolicy:
    limit: int = 5  # [up] restart_limit
    window_s: float = 300.0  # [up] restart_window_s


@dataclass(frozen=True)
class ChildRecord:
    """What the policy remembers of a child: its failures' times (within the window) and the
    backoff it waited last (0: none since it was steady)."""

    failures: tuple[float, ...] = ()
    last_backoff_s: float = 0.0


@dataclass(frozen=True)
class Restart:
    after_s: float
    record: ChildRecord


@dataclass(frozen=True)
class GiveUp:
    failures: int  # within the window, this one included


def on_failure(policy: RestartPolicy, record: ChildRecord, started_at: float, now: float
               ) -> Restart | GiveUp:
    """A child started at `started_at` died (or did not become ready) at `now`."""
    failures = (*(t for t in record.failures if now - t < policy.window_s), now)
    if len(failures) > policy.limit:
        return GiveUp(len(failures))
    steady = now - started_at >= STEADY_S
    last = 0.0 if steady else record.last_backoff_s
    backoff = FIRST_BACKOFF_S if last == 0 else min(MAX_BACKOFF_S, last * 2)
    return Restart(backoff, ChildRecord(failures, backoff))
