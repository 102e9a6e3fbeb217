"""Failed sign-ins counted in a sliding window per key — the client address and the account
name asked for, so neither many addresses against one account nor one address against many
accounts get past the limit. Past it, 429 (with Retry-After) until the oldest failure leaves
the window — even for a right password, or guessing would go on.

Atomic, and shared by every console process over the state folder: `admit` counts an attempt
as a failure in the same transaction (console/state_db.py) that lets it through, before its
password is checked, so parallel requests cannot all pass the check while the first ones are
still being hashed; `succeeded` forgets them. The time comes in."""

from __future__ import annotations

import math
from collections.abc import Iterable

from katagate.console.state_db import StateDb


def sign_in_keys(address: str, account: str) -> tuple[str, str]:
    """What a sign-in attempt is counted against: where it comes from and whom it is for."""
    return f"address {address}", f"account {account.casefold()[:64]}"


class LoginLimiter:
    def __init__(self, db: StateDb, limit: int, window_s: float) -> None:
        self._db = db
        self.limit = limit
        self.window_s = window_s

    def admit(self, keys: Iterable[str], now: float) -> int | None:
        """None: the attempt may be checked, and is counted as a failure of every key until
        `succeeded`. Else the seconds until every key is under the limit again (nothing
        counted)."""
        keys = tuple(keys)
        with self._db.transaction() as db:
            db.execute("DELETE FROM failures WHERE at <= ?", (now - self.window_s,))
            waits: list[int] = []
            for key in keys:
                # The limit-th most recent failure: it leaves the window first among those
                # that keep the key at the limit.
                row = db.execute("SELECT at FROM failures WHERE key = ? ORDER BY at DESC "
                                 "LIMIT 1 OFFSET ?", (key, self.limit - 1)).fetchone()
                if row is not None:
                    waits.append(max(1, math.ceil(float(row[0]) + self.window_s - now)))
            if waits:
                return max(waits)
            db.executemany("INSERT INTO failures VALUES (?, ?)", [(key, now) for key in keys])
            return None

    def succeeded(self, keys: Iterable[str]) -> None:
        with self._db.transaction() as db:
            db.executemany("DELETE FROM failures WHERE key = ?", [(key,) for key in keys])
