"""The DATA bytes all sessions may hold in memory at once (`data_budget_bytes`).

Without it the memory ingest needs grows with the senders, not with us: one address with 50
sessions could hold 50 messages of 36 MiB. Each session in DATA reserves as its body arrives, in
steps (one check per step, not per line), and gives everything back once its message has its
answer or its connection is gone. A reservation the budget cannot grant refuses that message
alone, with 451 4.3.1; the messages already reserved, being committed or accepted, keep theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

# Reserved at a time: small beside any budget (≥ 1 MiB), large enough that a 36 MiB body
# takes about 600 checks, not one per line.
STEP = 64 * 1024


@dataclass
class DataBudget:
    limit: int
    held: int = 0

    def take(self, octets: int) -> bool:
        """Reserves `octets` if they fit under the limit; False (and nothing taken) if not."""
        if self.held + octets > self.limit:
            return False
        self.held += octets
        return True

    def give_back(self, octets: int) -> None:
        self.held = max(0, self.held - octets)


class Reservation:
    """One session's share of the budget while it is in DATA."""

    def __init__(self, budget: DataBudget) -> None:
        self._budget = budget
        self.held = 0

    def cover(self, octets: int) -> bool:
        """True if `octets` in all are reserved for this message (taking one more step, or just
        what is missing when a whole step does not fit); False if the budget cannot grant it."""
        if octets <= self.held:
            return True
        wanted = max(octets, self.held + STEP)
        for more in (wanted - self.held, octets - self.held):
            if self._budget.take(more):
                self.held += more
                return True
        return False

    def release(self) -> None:
        self._budget.give_back(self.held)
        self.held = 0
