"""The session caps and the DATA rate deadline, as pure functions."""

from __future__ import annotations

from ingest.sessions import SessionTable, next_data_deadline


def test_sessions_are_capped_per_client_and_in_all_and_released_slots_are_reused():
    table = SessionTable(max_sessions=3, max_per_client=2)
    assert table.admit("192.0.2.1") is None
    assert table.admit("192.0.2.1") is None
    assert str(table.admit("192.0.2.1")) == "421 4.7.0 Too many connections from 192.0.2.1: limit 2"
    assert table.admit("192.0.2.2") is None
    assert str(table.admit("192.0.2.3")) == "421 4.7.0 Too many connections, try again later"
    assert table.total == 3
    table.release("192.0.2.1")
    assert table.admit("192.0.2.3") is None
    # A release of a client never admitted changes nothing (a refused connection's close).
    table.release("198.51.100.9")
    assert table.total == 3


def test_a_client_at_one_byte_a_second_runs_out_after_about_the_timeout():
    deadline, now = 180.0, 0.0
    while now < deadline:
        now += 1.0
        deadline = next_data_deadline(deadline, now, 1, timeout_s=180, min_rate=500)
    assert 180 <= now <= 181


def test_a_client_over_the_rate_is_never_cut_and_never_gets_more_than_the_timeout_ahead():
    deadline, now = 180.0, 0.0
    for _ in range(10_000):
        now += 1.0
        deadline = next_data_deadline(deadline, now, 600, timeout_s=180, min_rate=500)
        assert now < deadline <= now + 180


def test_rate_zero_is_plain_inactivity():
    assert next_data_deadline(5.0, 100.0, 1, timeout_s=180, min_rate=0) == 280.0
