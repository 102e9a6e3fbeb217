"""eventlog/fetching.py `behind`: whether a reader's newest record says it is catching up."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE

from katagate.eventlog.fetching import BEHIND_S, behind

NOW_MS = 1_800_000_000_000.0


@dataclass
class Message:
    timestamp_ms: int
    kind: int = TIMESTAMP_CREATE_TIME
    failed: bool = False  # an event (end of partition, error), not a record

    def error(self) -> object | None:
        return object() if self.failed else None

    def timestamp(self) -> tuple[int, int]:
        return self.kind, self.timestamp_ms


def test_the_newest_record_decides():
    old, new = int(NOW_MS - BEHIND_S * 1000 - 1), int(NOW_MS - 10)
    assert behind([Message(new), Message(old)], now_ms=NOW_MS)
    assert not behind([Message(old), Message(new)], now_ms=NOW_MS)
    assert not behind([Message(int(NOW_MS - BEHIND_S * 1000))], now_ms=NOW_MS)


def test_a_long_linger_is_behind_only_past_two_lingers():
    two_s_ago = int(NOW_MS - 2000)
    assert behind([Message(two_s_ago)], 0.1, now_ms=NOW_MS)
    assert not behind([Message(two_s_ago)], 1.5, now_ms=NOW_MS)
    assert behind([Message(two_s_ago - 1001)], 1.5, now_ms=NOW_MS)


def test_events_are_passed_over_and_nothing_is_not_behind():
    old = int(NOW_MS - 60_000)
    assert behind([Message(old), Message(0, failed=True)], now_ms=NOW_MS)
    assert not behind([Message(0, failed=True)], now_ms=NOW_MS)
    assert not behind([], now_ms=NOW_MS)


def test_a_record_without_a_timestamp_is_not_behind():
    assert not behind([Message(-1, kind=TIMESTAMP_NOT_AVAILABLE)], now_ms=NOW_MS)
