"""ingest/idle_timer.py: one timer per session, moved; the timeout runs once the last deadline
set has passed, on a real event loop."""

from __future__ import annotations

import asyncio

from katagate.ingest.idle_timer import MovedTimeout


class Session(MovedTimeout):
    def __init__(self, loop: asyncio.AbstractEventLoop, duration: float) -> None:
        self.loop = loop
        self._timeout_handle = None
        self._timeout_duration = duration
        self.fired: list[float] = []

    def _timeout_cb(self) -> None:
        self.fired.append(self.loop.time())


def run(steps) -> Session:
    async def main() -> Session:
        loop = asyncio.get_running_loop()
        session = Session(loop, 0.2)
        await steps(session, loop)
        return session
    return asyncio.run(main())


def test_given_a_later_deadline_then_the_same_timer_fires_once_at_it() -> None:
    async def steps(session: Session, loop: asyncio.AbstractEventLoop) -> None:
        started = loop.time()
        session._reset_timeout()
        first = session._timeout_handle
        for _ in range(5):  # a command every 0.03 s
            await asyncio.sleep(0.03)
            session._reset_timeout()
            assert session._timeout_handle is first  # moved, not replaced
        assert session.fired == []
        await asyncio.sleep(0.1)  # past the first deadline (0.2 s), not the last
        assert session.fired == []
        await asyncio.sleep(0.25)
        assert len(session.fired) == 1
        # The last reset was at about 0.15 s, for 0.2 s.
        assert 0.34 <= session.fired[0] - started < 0.5
    run(steps)


def test_given_an_earlier_deadline_then_it_fires_at_that_one() -> None:
    async def steps(session: Session, loop: asyncio.AbstractEventLoop) -> None:
        started = loop.time()
        session._reset_timeout(5.0)
        session._reset_timeout(0.05)  # the DATA rate deadline, shorter than the idle one
        await asyncio.sleep(0.2)
        assert len(session.fired) == 1
        assert session.fired[0] - started < 0.15
    run(steps)


def test_given_a_timer_that_fired_then_a_reset_arms_a_new_one() -> None:
    async def steps(session: Session, loop: asyncio.AbstractEventLoop) -> None:
        session._reset_timeout(0.02)
        await asyncio.sleep(0.1)
        assert len(session.fired) == 1
        session._reset_timeout(0.02)
        await asyncio.sleep(0.1)
        assert len(session.fired) == 2
    run(steps)


def test_given_a_cancelled_timer_then_a_reset_arms_a_new_one() -> None:
    # aiosmtpd cancels the handle when the connection is lost; a session reused after that
    # (STARTTLS makes a new transport) must still time out.
    async def steps(session: Session, loop: asyncio.AbstractEventLoop) -> None:
        session._reset_timeout(0.02)
        assert session._timeout_handle is not None
        session._timeout_handle.cancel()
        session._reset_timeout(0.05)
        await asyncio.sleep(0.15)
        assert len(session.fired) == 1
    run(steps)
