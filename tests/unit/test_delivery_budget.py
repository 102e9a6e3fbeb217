"""The bytes apply's delivery threads hold at once: what fits runs together, what does not
waits for others to end, a message larger than the budget runs alone, and every reservation is
given back, whatever the job did."""

from __future__ import annotations

import threading
import time

import pytest

from katagate.decider.delivery_budget import DeliveryBudget
from katagate.decider.settings import DeciderSettings

MiB = 1024 * 1024


def test_given_room_when_small_messages_are_held_then_none_waits() -> None:
    budget = DeliveryBudget(10 * MiB)
    with budget.holding(4 * MiB), budget.holding(4 * MiB):
        assert budget.held == 8 * MiB
    assert budget.held == 0


def test_given_a_full_budget_when_another_message_comes_then_it_waits_for_one_to_end() -> None:
    budget = DeliveryBudget(10 * MiB)
    first_ends, order = threading.Event(), []

    def first() -> None:
        with budget.holding(8 * MiB):
            order.append("first began")
            first_ends.wait(5)
            order.append("first ended")

    def second() -> None:
        with budget.holding(4 * MiB):
            order.append("second began")

    a = threading.Thread(target=first)
    a.start()
    while not order:
        time.sleep(0.001)
    b = threading.Thread(target=second)
    b.start()
    time.sleep(0.1)
    assert order == ["first began"]  # 8 + 4 MiB do not fit in 10
    first_ends.set()
    a.join(5)
    b.join(5)
    assert order == ["first began", "first ended", "second began"]
    assert budget.held == 0


def test_a_message_larger_than_the_budget_takes_all_of_it_and_runs_alone() -> None:
    budget = DeliveryBudget(10 * MiB)
    with budget.holding(40 * MiB):
        assert budget.held == 10 * MiB
    assert budget.held == 0


def test_a_job_that_fails_gives_its_bytes_back() -> None:
    budget = DeliveryBudget(10 * MiB)
    with pytest.raises(RuntimeError), budget.holding(6 * MiB):
        raise RuntimeError("the next hop went away")
    assert budget.held == 0
    with budget.holding(10 * MiB):
        assert budget.held == 10 * MiB


def test_the_default_is_what_eight_threads_held_at_most_before() -> None:
    settings = DeciderSettings(helo_name="gw")
    assert settings.delivery_budget_bytes == 8 * 36 * MiB
    assert settings.delivery_concurrency == 20
