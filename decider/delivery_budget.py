"""The message bytes apply's delivery threads may hold at once (`delivery_budget_bytes`).

With 20 threads, twenty messages of 36 MiB would be in memory together, each at about 2.4 times
its size at its peak (docs/PERFORMANCE.md): more than a decider's memory limit. A job reserves
its message's size before reading it and gives it back when it ends; a job that does not fit
waits for others to end. A message larger than the whole budget takes all of it: it runs alone,
never not at all. Small messages, the usual, never wait.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class DeliveryBudget:
    """Thread-safe: the delivery threads share one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._changed = threading.Condition()

    @contextmanager
    def holding(self, size: int) -> Iterator[None]:
        """Reserve `size` bytes (at most the whole budget) for the block, waiting until they
        fit."""
        size = min(max(0, size), self.limit)
        with self._changed:
            self._changed.wait_for(lambda: self.held + size <= self.limit)
            self.held += size
        try:
            yield
        finally:
            with self._changed:
                self.held -= size
                self._changed.notify_all()
