"""Where a partition's restore may begin: the offset of the first record of the oldest entry a
stage's state still holds. The loop commits it beside the partition's offset (as the commit's
metadata string), and a restore reads from there instead of from the partition's start, so a
rebalance costs what is still open, not the age of the log.

The state must be a fold in which an entry begins with one record and is only ever changed
by later records about it; records about entries that left the state (or never were in it)
must change nothing. Then reading from the point gives the state reading from the start
gives.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

log = logging.getLogger(__name__)

PREFIX = "restore-from:"


class RestorePoints:
    """Per partition, the offsets where the entries still held began, oldest first (records
    are folded in offset order, so insertion order is offset order)."""

    def __init__(self) -> None:
        self._began: dict[int, OrderedDict[str, int]] = {}

    def began(self, partition: int, key: str, offset: int) -> None:
        entries = self._began.setdefault(partition, OrderedDict())
        entries.setdefault(key, offset)  # read again after a rewind: it began where it began

    def point(self, partition: int, held: Callable[[str], bool]) -> int | None:
        """The offset of the oldest entry still `held`; None if the partition holds none.
        Entries that left the state are dropped on the way: amortised O(1)."""
        entries = self._began.get(partition)
        while entries:
            key, offset = next(iter(entries.items()))
            if held(key):
                return offset
            entries.popitem(last=False)
        return None

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._began.pop(partition, None)


def encode(point: int) -> str:
    return f"{PREFIX}{point}"


def decode(metadata: str | None, committed: int) -> int | None:
    """The restore point a commit carries, if it carries a usable one (at or before the
    committed offset); None means: read from the partition's start, as before points were
    committed."""
    if not metadata or not metadata.startswith(PREFIX):
        return None
    try:
        point = int(metadata[len(PREFIX):])
    except ValueError:
        return None
    return point if 0 <= point <= committed else None


def committed_points(consumer: Any, partitions: Iterable[TopicPartition],
                     timeout_s: float) -> dict[int, int]:
    """Each partition's restore point as its group committed it; a partition without one (or
    all, when the commits cannot be read) is folded from its start."""
    try:
        committed = consumer.committed(
            [TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=timeout_s)
    except KafkaException as exc:
        log.warning("restore points unreadable (%s): folding from offset 0", exc)
        return {}
    starts = {tp.partition: decode(tp.metadata, tp.offset) for tp in committed if tp.offset >= 0}
    return {partition: point for partition, point in starts.items() if point is not None}
