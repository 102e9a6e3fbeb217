"""Failed logins counted per client address in a sliding window: past the limit, that address
gets 429 (with Retry-After) until its oldest failure leaves the window — even for a right
password, or guessing would go on. Pure: the time comes in."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque

MAX_ADDRESSES = 10_000  # memory bound: the addresses seen least recently are forgotten first


class LoginLimiter:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, address: str, now: float) -> int | None:
        """Seconds until `address` may try again, or None if it may now."""
        with self._lock:
            failures = self._recent(address, now)
            if len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[-self.limit] + self.window_s - now))

    def failed(self, address: str, now: float) -> None:
        with self._lock:
            failures = self._recent(address, now)
            failures.append(now)
            self._failures[address] = failures
            self._failures.move_to_end(address)
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
