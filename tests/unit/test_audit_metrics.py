"""The checkpointer's count of records past a partition's last checkpoint (audit/metrics.py)."""

from __future__ import annotations

from katagate.audit.metrics import not_covered


def test_given_a_reader_behind_the_end_then_the_unread_records_count_with_the_read_ones():
    assert not_covered(read=3, position=120, end=130) == 13


def test_given_a_reader_at_the_end_then_only_the_read_ones_wait():
    assert not_covered(read=3, position=130, end=130) == 3


def test_given_no_fetch_yet_then_the_unknown_offsets_count_nothing():
    # librdkafka's OFFSET_INVALID (-1001) until a fetch has brought the partition's end
    assert not_covered(read=2, position=-1001, end=-1001) == 2
    assert not_covered(read=2, position=5, end=-1001) == 2
    assert not_covered(read=2, position=-1001, end=9) == 2
