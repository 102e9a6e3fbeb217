"""What the scanner's /readyz says of it (eventlog/health.py), pure: its partitions, and the
Central Node connected or deliberately not configured (scanner/connection.py's states)."""

from __future__ import annotations

from katagate.eventlog.health import Condition, Health
from katagate.scanner.connection import ConnectionView
from katagate.scanner.settings import ScannerSettings

# Ready to scan, or deliberately not scanning (no Central Node address set).
READY_STATES = ("connected", "not_configured")


def partitions_condition(joined: bool, assigned: int, catching_up: int) -> Condition:
    """In the group, and every assigned partition folded to its end (nothing is submitted for
    a partition before)."""
    if not joined:
        return Condition(False, "joining", "waiting for the consumer group's assignment")
    if catching_up:
        return Condition(False, "catching_up",
                         f"{catching_up} of {assigned} partitions still folding to their end")
    if not assigned:
        return Condition(True, "standing_by", "in the group, no partitions assigned")
    return Condition(True, "ready", f"{assigned} partitions")


def central_node_condition(view: ConnectionView) -> Condition:
    """The connection's state alone: its detail names the node's address, its key's fingerprint
    and the transport's error text, which an unauthenticated listener does not give out; an
    administrator reads them with `katagate kata state` or in the console."""
    detail = "" if view.state in READY_STATES else "details: katagate kata state"
    return Condition(view.state in READY_STATES, view.state, detail)


def report(health: Health, joined: bool, assigned: int, catching_up: int,
           view: ConnectionView) -> None:
    health.set("scanner", partitions_condition(joined, assigned, catching_up))
    health.set("central_node", central_node_condition(view))


def allowance(batch: int, scanner: ScannerSettings) -> float:
    """How long a round of `batch` submissions may block the loop: each thread's requests one
    after another, then the record and a state poll."""
    waves = -(-batch // scanner.submit_concurrency)
    return (waves + 2) * scanner.request_timeout_s
