"""A session's timeout, moved without a new timer at every command.

aiosmtpd resets its timeout on every command and, with the DATA rate check (sessions.py), on
every piece of a body: a cancel and a new `call_later` each time, a timer object allocated and
a cancelled one left in the loop's heap. This keeps one timer per session and a deadline: a
later deadline only moves the number, and the timer, when it fires early, waits again until
the deadline; an earlier one replaces the timer. What a session sees is the same: the
timeout callback runs once the last deadline set has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# A timer that fires this close to its deadline counts as due (the loop may run a timer up to
# its clock resolution early).
EARLY_S = 0.001


class MovedTimeout:
    """Mixin before aiosmtpd's `SMTP`: its `_reset_timeout`, with the same meaning."""

    loop: asyncio.AbstractEventLoop
    _timeout_handle: asyncio.TimerHandle | None
    _timeout_duration: float
    _timeout_cb: Callable[[], Any]  # aiosmtpd's, or the subclass's
    _deadline: float = 0.0
    _fired = True  # no timer waiting for the deadline yet

    def _reset_timeout(self, duration: float | None = None) -> None:
        loop = self.loop
        deadline = loop.time() + (duration or self._timeout_duration)
        self._deadline = deadline
        handle = self._timeout_handle
        if handle is not None and not self._fired and not handle.cancelled() \
                and handle.when() <= deadline:
            return  # it fires first, and waits again until the deadline
        if handle is not None:
            handle.cancel()
        self._fired = False
        self._timeout_handle = loop.call_at(deadline, self._timeout_due)

    def _timeout_due(self) -> None:
        loop = self.loop
        if self._deadline - loop.time() > EARLY_S:
            self._timeout_handle = loop.call_at(self._deadline, self._timeout_due)
            return
        self._fired = True
        self._timeout_cb()
