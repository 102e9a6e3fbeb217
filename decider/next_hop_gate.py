"""A next hop that does not answer is suspended, as Postfix suspends a dead destination.

Postfix's queue manager declares a destination dead when a whole cohort of its deliveries
(as many as its concurrency) fails at the connection level, and then defers its mail without
connecting ("delivery temporarily suspended: ...") for `minimal_backoff_time`. Apply does the
same for its one next hop: after `cohort` connection-level failures in a row (no SMTP reply:
refused, timed out, dropped, TLS failed) it defers every delivery at once, with the last
failure as the reason, for `suspend_s`. The first delivery after that tries the next hop
again; if it fails too, the next hop is suspended again at once.

Without it, a next hop that swallows connections makes every delivery of a batch, and every
retry falling due, wait out the SMTP timeout in turn: a batch of a few dozen deliveries then
outlasts the consumer's poll interval. A deferral here is an ordinary deferral, retried on the
message's schedule.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from katagate.decider.smtp_out import DeliveryOutcome

log = logging.getLogger(__name__)

SUSPENDED = Gauge("katagate_next_hop_suspended",
                  "1 while the next hop is suspended after a cohort of connection failures")
NOT_TRIED = Counter("katagate_next_hop_deliveries_not_tried_total",
                    "Deliveries deferred without connecting: the next hop was suspended")


class NextHopGate:
    """Thread-safe: the delivery threads share one."""

    def __init__(self, next_hop: str, cohort: int, suspend_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._next_hop = next_hop
        self._cohort = max(1, cohort)
        self._suspend_s = suspend_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failed_in_a_row = 0
        self._until = 0.0  # suspended while the clock is before it
        self._reason = ""

    def closed(self) -> DeliveryOutcome | None:
        """The deferral to record instead of connecting, while the next hop is suspended."""
        with self._lock:
            if self._clock() >= self._until:
                return None
            reason = self._reason
        NOT_TRIED.inc()
        return DeliveryOutcome("deferred", f"delivery temporarily suspended: {reason}", None)

    def record(self, outcome: DeliveryOutcome) -> None:
        """Count what a delivery that connected (or tried to) met."""
        unreachable = outcome.kind == "deferred" and outcome.code is None
        with self._lock:
            if not unreachable:
                if self._until:
                    log.info("next hop %s answers again: deliveries resume", self._next_hop)
                    SUSPENDED.set(0)
                self._failed_in_a_row, self._until = 0, 0.0
                return
            self._failed_in_a_row += 1
            # After a suspension one more failure is enough: the first tries were a cohort.
            if self._failed_in_a_row < self._cohort:
                return
            self._until, self._reason = self._clock() + self._suspend_s, outcome.reply
        log.warning("next hop %s suspended for %g s after %d connection failures in a row "
                    "(last: %s); deliveries meanwhile are deferred without connecting",
                    self._next_hop, self._suspend_s, self._failed_in_a_row, outcome.reply)
        SUSPENDED.set(1)
