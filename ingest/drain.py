"""The drain of the SMTP listener on stop (ingest/README.md, "Stopping"; the decisions in
ingest/drain_policy.py): sessions finish their transactions for at most drain_timeout_s while
the listener answers new connections 421; then the sessions left are closed, a message being
committed first getting its answer within commit_timeout_s, as before there was a drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Protocol

from katagate.ingest.drain_policy import DrainEnd, DrainState

log = logging.getLogger(__name__)
POLL_S = 0.05


class DrainedSession(Protocol):
    @property
    def committing(self) -> bool:
        """Its body is in and its writes are under way: its answer is due within the bound."""
        ...

    def close_draining(self) -> None:
        """Send the 421 (when the connection can take it) and close."""
        ...


async def drain(sessions: Collection[DrainedSession], state: DrainState, *, timeout_s: float,
                commit_timeout_s: float) -> DrainEnd:
    """Drain until no session is left or `timeout_s`; `sessions` is live (sessions leave it as
    their connections close). New connections are answered by the sessions' own check of
    `state`, set here first."""
    loop = asyncio.get_running_loop()
    state.draining = True
    started, open_at_start = loop.time(), len(sessions)
    log.info("draining: %d sessions open may finish their messages for at most %g s; new "
             "connections get 421 4.3.2", open_at_start, timeout_s)
    deadline = started + timeout_s
    while sessions and loop.time() < deadline:
        await asyncio.sleep(POLL_S)
    at_bound = list(sessions)
    for session in at_bound:
        if not session.committing:
            session.close_draining()
    # No 250 for an unwritten message, and none withheld from a written one: a session whose
    # writes are under way keeps its connection until its answer is out, within the bound.
    commit_deadline = loop.time() + commit_timeout_s
    while any(s.committing for s in sessions) and loop.time() < commit_deadline:
        await asyncio.sleep(POLL_S)
    for session in list(sessions):
        session.close_draining()
    await asyncio.sleep(0)
    end = DrainEnd(open_at_start, len(at_bound), loop.time() - started)
    log.info("%s", end.line())
    return end
