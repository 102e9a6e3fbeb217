"""The session caps and the DATA rate deadline, as pure functions."""

from __future__ import annotations

import pytest

from katagate.ingest.sessions import SessionTable, client_key, next_data_deadline


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


@pytest.mark.parametrize(("peer", "prefix", "key"), [
    ("192.0.2.7", 64, "192.0.2.7"),  # IPv4: per address
    ("::ffff:192.0.2.7", 64, "192.0.2.7"),  # IPv4 on a dual-stack socket: the same client
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", 48, "2001:db8:1::/48"),
    ("2001:db8:1:2::1", 128, "2001:db8:1:2::1/128"),
    ("fe80::1%eth0", 64, "fe80::/64"),
    ("::1", 64, "::/64"),
    ("unix-socket", 64, "unix-socket"),
])
def test_a_client_is_an_ipv4_address_or_an_ipv6_network_of_the_prefix(peer, prefix, key):
    assert client_key(peer, prefix) == key


def test_every_address_of_one_ipv6_64_shares_its_allowance():
    # Given a cap of 2 sessions per client
    table = SessionTable(max_sessions=100, max_per_client=2)
    # When one host opens sessions from three addresses of its /64
    first, second, third = (client_key(f"2001:db8:0:7::{n}", 64) for n in (1, 2, 3))
    assert table.admit(first) is None
    assert table.admit(second) is None
    # Then the third is refused, naming the network; another /64 is another client
    assert str(table.admit(third)) == (
        "421 4.7.0 Too many connections from 2001:db8:0:7::/64: limit 2")
    assert table.admit(client_key("2001:db8:0:8::1", 64)) is None
