"""ingest/idle_timer.py: one timer per session, moved; the timeout runs once the last deadline
set has passed. On a loop whose clock the test moves (a real loop's sleeps overshoot on a busy
machine), and once on a real loop."""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

import pytest

from katagate.ingest.idle_timer import MovedTimeout


class Timer:
    def __init__(self, when: float, callback: Any) -> None:
        self._when, self.callback, self._cancelled = when, callback, False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class ManualLoop:
    """`time`, `call_at`, and `advance`, which runs what falls due in time order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, int, Timer]] = []
        self.made = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> Timer:
        timer = Timer(when, callback)
        self.made += 1
        heapq.heappush(self.timers, (when, self.made, timer))
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.timers and self.timers[0][0] <= end:
            when, _, timer = heapq.heappop(self.timers)
            self.now = max(self.now, when)
            if not timer.cancelled():
                timer.callback()
        self.now = end


class Session(MovedTimeout):
    def __init__(self, loop: Any, duration: float) -> None:
        self.loop = loop
        self._timeout_handle = None
        self._timeout_duration = duration
        self.fired: list[float] = []

    def _timeout_cb(self) -> None:
        self.fired.append(self.loop.time())


def test_given_later_deadlines_then_one_timer_fires_once_at_the_last() -> None:
    loop = ManualLoop()
    session = Session(loop, 0.2)
    session._reset_timeout()
    first = session._timeout_handle
    for _ in range(5):  # a command every 0.03 s
        loop.advance(0.03)
        session._reset_timeout()
        assert session._timeout_handle is first  # moved, not replaced
    assert loop.made == 1
    loop.advance(0.1)  # past the first deadline (0.2 s), not the last (0.35 s)
    assert session.fired == []
    loop.advance(0.2)
    assert session.fired == [pytest.approx(0.35)]
    assert loop.made == 2  # the timer waited once more, for the deadline


def test_given_an_earlier_deadline_then_it_fires_at_that_one() -> None:
    loop = ManualLoop()
    session = Session(loop, 300)
    session._reset_timeout()
    session._reset_timeout(0.05)  # the DATA rate deadline, shorter than the idle one
    loop.advance(1.0)
    assert session.fired == [0.05]


def test_given_a_timer_that_fired_then_a_reset_arms_a_new_one() -> None:
    loop = ManualLoop()
    session = Session(loop, 300)
    session._reset_timeout(0.02)
    loop.advance(0.1)
    session._reset_timeout(0.02)
    loop.advance(0.1)
    assert len(session.fired) == 2


def test_given_a_cancelled_timer_then_a_reset_arms_a_new_one() -> None:
    # aiosmtpd cancels the handle when the connection is lost.
    loop = ManualLoop()
    session = Session(loop, 300)
    session._reset_timeout(0.02)
    assert session._timeout_handle is not None
    session._timeout_handle.cancel()
    session._reset_timeout(0.05)
    loop.advance(0.1)
    assert session.fired == [0.05]


def test_given_a_real_loop_then_the_timeout_runs_after_the_last_deadline() -> None:
    async def main() -> tuple[float, list[float]]:
        loop = asyncio.get_running_loop()
        session = Session(loop, 0.05)
        started = loop.time()
        session._reset_timeout()
        session._reset_timeout(0.1)
        await asyncio.sleep(0.3)
        return started, session.fired

    started, fired = asyncio.run(main())
    assert len(fired) == 1
    assert fired[0] - started >= 0.1 - 0.001  # never before the deadline (less EARLY_S)
