"""A stop's drain, pure: its deadline, the jobs it lets begin, and where a batch is cut when
some of its records were not carried out (eventlog/drain.py; the loop's use of it with a real
broker and a slow next hop: tests/e2e/test_apply_drain.py)."""

from __future__ import annotations

from katagate.eventlog.drain import Drain, NotCarriedOut, before_cut, carried_out, cut
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.records import Consumed


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rec(partition: int, offset: int, topic: str = "t.mail") -> Consumed:
    return Consumed(topic, partition, offset, None, b"{}")


def test_a_drain_is_over_only_after_its_timeout_from_the_stop():
    clock = Clock()
    drain = Drain(2.0, clock)
    assert not drain.over()
    clock.now += 50  # no stop yet: never over however long it runs
    assert not drain.over()
    drain.begin()
    clock.now += 1.5
    assert not drain.over()
    drain.begin()  # a second signal does not move the deadline
    clock.now += 0.5
    assert drain.over()


def test_a_job_begins_until_the_deadline_and_its_error_is_its_result():
    clock = Clock()
    drain = Drain(0.0, clock)
    assert carried_out(drain, lambda: ["done"]) == ["done"]
    failure = carried_out(drain, lambda: 1 // 0)
    assert isinstance(failure, ZeroDivisionError)
    drain.begin()
    ran: list[int] = []
    result = carried_out(drain, lambda: ran.append(1))
    assert isinstance(result, NotCarriedOut)
    assert ran == []


def test_the_cut_is_each_partitions_first_record_not_carried_out():
    records = [rec(0, 10), rec(1, 20), rec(0, 11), rec(1, 21), rec(0, 12), rec(2, 5)]
    no = NotCarriedOut("late")
    results: list[object] = [[], [], no, [], no, []]
    cuts = cut(records, results)
    assert cuts == {("t.mail", 0): 11}
    assert [before_cut(r, cuts) for r in records] == [True, True, False, True, False, True]
    # Committed: partition 0 up to offset 11 (read again from it), the others past the batch.
    offsets = TransactionalLoop._next_offsets(records, cuts)
    assert {(tp.partition, tp.offset) for tp in offsets} == {(0, 11), (1, 22), (2, 6)}


def test_a_batch_without_a_cut_is_committed_past_its_last_record():
    records = [rec(0, 3), rec(0, 4)]
    assert cut(records, [[], ValueError("poison")]) == {}
    assert [(tp.partition, tp.offset) for tp in TransactionalLoop._next_offsets(records)] == [
        (0, 5)]
