"""Failed sign-ins counted in a sliding window per key — the client address and the account
name asked for, so neither many addresses against one account nor one address against many
accounts get past the limit. Past it, 429 (with Retry-After) until the oldest failure leaves
the window — even for a right password, or guessing would go on.

Atomic: `admit` counts an attempt as a failure in the same locked step that lets it through,
before its password is checked, so parallel requests cannot all pass the check while the first
ones are still being hashed; `succeeded` forgets them. Pure: the time comes in."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable

MAX_KEYS = 10_000  # memory bound: the keys seen least recently are forgotten first


def sign_in_keys(address: str, account: str) -> tuple[str, str]:
    """What a sign-in attempt is counted against: where it comes from and whom it is for."""
    return f"address {address}", f"account {account.casefold()[:64]}"


class LoginLimiter:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def _retry_after(self, key: str, now: float) -> int | None:
        failures = self._recent(key, now)
        if len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[-self.limit] + self.window_s - now))

    def admit(self, keys: Iterable[str], now: float) -> int | None:
        """None: the attempt may be checked, and is counted as a failure of every key until
        `succeeded`. Else the seconds until every key is under the limit again (nothing
        counted)."""
        keys = tuple(keys)
        with self._lock:
            waits = [wait for key in keys if (wait := self._retry_after(key, now)) is not None]
            if waits:
                return max(waits)
            for key in keys:
                failures = self._recent(key, now)
                failures.append(now)
                self._failures[key] = failures
                self._failures.move_to_end(key)
            while len(self._failures) > MAX_KEYS:
                self._failures.popitem(last=False)
            return None

    def succeeded(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
