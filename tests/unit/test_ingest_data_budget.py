"""The DATA budget shared by all sessions, and the body reader reserving from it, as pure code
(the StreamReader is fed in memory)."""

from __future__ import annotations

import asyncio

import pytest

from katagate.ingest.data_body import DataBody, Overflow
from katagate.ingest.data_budget import STEP, DataBudget, Reservation
from katagate.ingest.settings import IngestSettings

LINE = b"x" * 998 + b"\r\n"


def read(wire: bytes, reservation: Reservation) -> tuple[DataBody, bytes]:
    async def run() -> tuple[DataBody, bytes]:
        reader = asyncio.StreamReader(limit=1001)
        reader.feed_data(wire)
        reader.feed_eof()
        body = DataBody(max_bytes=10 * STEP, max_line=1001, reservation=reservation)
        await body.read(reader)
        return body, await reader.read()
    return asyncio.run(run())


def test_reservations_grow_in_steps_and_never_past_the_limit():
    # Given a budget of two and a half steps
    budget = DataBudget(limit=2 * STEP + STEP // 2)
    first, second = Reservation(budget), Reservation(budget)
    # When two sessions reserve as their bodies grow
    assert first.cover(1)
    assert first.held == STEP
    assert first.cover(STEP)
    assert first.held == STEP  # already covered: nothing more taken
    assert second.cover(STEP + 1)
    assert second.held == STEP + 1  # a whole step does not fit: what is missing does
    # Then the one that would go over is refused and takes nothing
    assert not first.cover(2 * STEP)
    assert first.held == STEP
    assert budget.held == 2 * STEP + 1
    # And what a session gives back serves the others
    second.release()
    assert budget.held == STEP
    assert second.held == 0
    assert first.cover(2 * STEP)
    assert budget.held == 2 * STEP


def test_a_body_within_the_budget_is_read_whole_and_its_reservation_covers_it():
    budget = DataBudget(limit=4 * STEP)
    reservation = Reservation(budget)
    wire = LINE * 100
    body, rest = read(wire + b".\r\nQUIT\r\n", reservation)
    assert body.overflow is Overflow.NONE
    assert body.content() == wire
    assert rest == b"QUIT\r\n"
    assert len(wire) <= reservation.held == budget.held < len(wire) + STEP


def test_a_body_over_the_budget_is_read_to_the_end_refused_and_gives_its_share_back():
    # Given a budget another session already holds most of
    budget = DataBudget(limit=2 * STEP)
    other = Reservation(budget)
    assert other.cover(STEP + STEP // 2)
    reservation = Reservation(budget)
    # When a body larger than what is left arrives
    body, rest = read(LINE * 100 + b".\r\nQUIT\r\n", reservation)
    # Then it is read to its final dot, refused as a whole, and holds nothing
    assert body.done
    assert body.overflow is Overflow.OVER_BUDGET
    assert body.content() == b""
    assert rest == b"QUIT\r\n"
    assert reservation.held == 0
    assert budget.held == other.held


def test_a_body_over_the_size_limit_gives_its_share_back_as_soon_as_it_is_refused():
    budget = DataBudget(limit=20 * STEP)
    body, _ = read(LINE * 700 + b".\r\n", Reservation(budget))  # over the 10 steps allowed
    assert body.overflow is Overflow.TOO_MUCH
    assert budget.held == 0


def test_a_budget_smaller_than_the_largest_message_is_refused_naming_both_settings():
    with pytest.raises(ValueError, match=r"data_budget_bytes .* max_message_bytes"):
        IngestSettings(max_message_bytes=8 * 1024 * 1024, data_budget_bytes=4 * 1024 * 1024)
    with pytest.raises(ValueError, match="data_budget_bytes"):
        IngestSettings(data_budget_bytes=1024)  # under 1 MiB
    assert IngestSettings().data_budget_bytes == 512 * 1024 * 1024
