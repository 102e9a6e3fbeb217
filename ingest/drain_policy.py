"""The orderly stop's decisions, pure (ingest/README.md, "Stopping"): which command a
draining session still answers, the 421 it gets otherwise, and the line that ends the drain.

RFC 5321 4.2.1 lets a server answer any command with 421 when it knows it must shut down, and
3.8 asks it to send that 421 rather than just close. A transaction already begun (MAIL
accepted) may finish: its message is what the sender has started to hand over, and stopping it
halfway costs a retry of the whole message. Nothing else is started.
"""

from __future__ import annotations

from dataclasses import dataclass

from katagate.ingest import replies
from katagate.ingest.replies import Reply

# Answered as usual in a transaction in progress: what carries it to its end (RCPT, DATA and
# its body), NOOP (a keep-alive while the client prepares its next step: no new work, and the
# drain's bound still applies), QUIT (221: the client leaves, as we want).
# Refused with 421 in a transaction: MAIL (a nested transaction is new work), RSET, HELO and
# EHLO (they abandon the transaction: nothing is left to finish), STARTTLS (it resets the
# session too), VRFY, EXPN, HELP, XFORWARD (none of them finishes the message).
FINISHING = frozenset({"RCPT", "DATA", "NOOP", "QUIT"})


def refused_while_draining(command: str, in_transaction: bool) -> bool:
    """Whether a draining session answers `command` (upper case) with 421 and closes.

    Outside a transaction every command but QUIT is: nothing is in progress to finish. That
    includes RSET and NOOP, which an MTA sends to check a cached connection before it reuses
    it (Postfix's smtp client sends RSET): the 421 sends it to another gateway at once, instead
    of holding this one until the bound."""
    if command == "QUIT":
        return False
    return not in_transaction or command not in FINISHING


def draining_reply(hostname: str) -> Reply:
    return replies.DRAINING.with_text(replies.DRAINING.text.format(hostname=hostname))


@dataclass
class DrainState:
    """Shared by the listener and its sessions, on the event loop: set once, when stop is."""

    draining: bool = False


@dataclass(frozen=True)
class DrainEnd:
    open_at_start: int
    closed_at_bound: int  # still open at drain_timeout_s: closed with 421 (after any commit)
    seconds: float

    @property
    def finished(self) -> int:
        return self.open_at_start - self.closed_at_bound

    def line(self) -> str:
        return (f"drain ended after {self.seconds:.1f} s: {self.finished} of "
                f"{self.open_at_start} sessions finished, {self.closed_at_bound} closed at "
                "the bound")
