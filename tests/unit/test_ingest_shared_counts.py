"""The session counts ingest's SMTP workers share (ingest/shared_counts.py), and the session
caps decided on them (ingest/sessions.py), two workers' views of one map in one process."""

from __future__ import annotations

import os

import pytest

from katagate.ingest import replies, shared_counts
from katagate.ingest.sessions import SessionTable
from katagate.ingest.shared_counts import SharedCounts


@pytest.fixture
def fd():  # type: ignore[no-untyped-def]
    made = shared_counts.create(2)
    yield made
    os.close(made)


def test_given_two_workers_counts_then_each_reads_the_sum_and_clearing_one_drops_its_own(
        fd: int) -> None:
    first, second = SharedCounts(fd, 0), SharedCounts(fd, 1)
    first.add("192.0.2.1", 1)
    second.add("192.0.2.1", 2)
    second.add(None, 1)  # a session whose client a PROXY header will name
    assert (first.client("192.0.2.1"), second.client("192.0.2.1")) == (3, 3)
    assert first.client("192.0.2.2") == 0
    assert first.total() == 4
    second.add_client("192.0.2.2", 1)
    assert (second.client("192.0.2.2"), second.total()) == (1, 4)
    first.clear(1)  # worker 1 died: its sessions with it
    assert (first.client("192.0.2.1"), first.client("192.0.2.2"), first.total()) == (1, 0, 1)


def test_given_a_map_of_another_size_or_a_column_out_of_range_then_it_is_refused(
        fd: int) -> None:
    assert shared_counts.workers_of(fd) == 2
    with pytest.raises(ValueError, match="column 2"):
        SharedCounts(fd, 2)
    other = os.memfd_create("not-counts")
    try:
        os.ftruncate(other, 1000)
        with pytest.raises(ValueError, match="session counts"):
            SharedCounts(other, 0)
    finally:
        os.close(other)


def test_given_two_workers_tables_then_the_per_client_and_total_caps_are_the_stage_s(
        fd: int) -> None:
    a = SessionTable(4, 3, SharedCounts(fd, 0))
    b = SessionTable(4, 3, SharedCounts(fd, 1))
    assert a.admit("192.0.2.1") is None
    assert a.admit("192.0.2.1") is None
    assert b.admit("192.0.2.1") is None
    refused = b.admit("192.0.2.1")  # the fourth, at either worker
    assert refused is not None
    assert "limit 3" in str(refused)
    assert a.admit("192.0.2.1") is not None
    assert b.admit(None) is None  # the fourth session in all
    assert a.admit("192.0.2.9") == replies.TOO_MANY_SESSIONS
    # The unnamed session named: over its client's cap, refused and no longer counted
    assert b.identify("192.0.2.1") is not None
    assert a.admit("192.0.2.9") is None
    a.release("192.0.2.1")
    assert b.admit("192.0.2.1") is None  # a slot freed at the other worker
    for table, client in ((a, "192.0.2.1"), (b, "192.0.2.1"), (b, "192.0.2.1"),
                          (a, "192.0.2.9")):
        table.release(client)
    assert SharedCounts(fd, 0).total() == 0


def test_given_a_client_sharing_one_of_another_s_buckets_then_the_other_is_not_refused(
        fd: int) -> None:
    counts = SharedCounts(fd, 0)
    victim = "2001:db8::/64"
    first, _ = counts._buckets(victim)
    # A client in the victim's first bucket only, found among many (as an attacker with many
    # networks could, from early refusals)
    neighbour = next(f"2001:db8:{n:x}::/64" for n in range(1, 1_000_000)
                     if counts._buckets(f"2001:db8:{n:x}::/64")[0] == first
                     and second_apart(counts, f"2001:db8:{n:x}::/64", victim))
    table = SessionTable(1000, 5, counts)
    for _ in range(5):
        assert table.admit(neighbour) is None
    assert table.admit(neighbour) is not None
    assert counts.client(victim) == 0
    assert table.admit(victim) is None


def second_apart(counts: SharedCounts, one: str, other: str) -> bool:
    return counts._buckets(one)[1] != counts._buckets(other)[1]
