"""A stage's orderly stop: work already begun is finished and committed, work not begun by the
drain's deadline is left for the next start (docs/ARCHITECTURE.md, "Stopping").

A handler whose batch has effects outside Kafka (apply's SMTP deliveries) answers a record it
did not begin with `NotCarriedOut`. The loop then commits the batch on that record's partition
only up to it (`cut`): the record and every later one of its partition are read again at the
next start, and no effect that did happen is ever without its record, nor repeated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from katagate.eventlog.errors import KatagateError
from katagate.eventlog.records import Consumed

T = TypeVar("T")


class NotCarriedOut(KatagateError):  # a result, never raised nor dead-lettered
    """A record whose effects the handler did not begin: a stop's drain ran out first."""


class Drain:
    """The stop's deadline: none until `begin`, then `timeout_s` from it."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._deadline: float | None = None
        self._lock = threading.Lock()

    def begin(self) -> None:
        with self._lock:
            if self._deadline is None:
                self._deadline = self._clock() + self.timeout_s

    def over(self) -> bool:
        """True once the deadline has passed: begin nothing new."""
        deadline = self._deadline
        return deadline is not None and self._clock() >= deadline


def cut(records: Sequence[Consumed], results: Sequence[object]) -> dict[tuple[str, int], int]:
    """Per partition, the offset of its first record answered `NotCarriedOut`: the batch is
    committed there up to it (exclusive). Partitions with none are not in the result."""
    first: dict[tuple[str, int], int] = {}
    for record, result in zip(records, results, strict=True):
        if isinstance(result, NotCarriedOut):
            key = (record.topic, record.partition)
            first[key] = min(first.get(key, record.offset), record.offset)
    return first


def before_cut(record: Consumed, cuts: dict[tuple[str, int], int]) -> bool:
    at = cuts.get((record.topic, record.partition))
    return at is None or record.offset < at


def carried_out(drain: Drain, job: Callable[[], T]) -> T | Exception:
    """The job's result, or the exception it raised (that record alone is set aside), or
    `NotCarriedOut` when the drain is over before it begins."""
    if drain.over():
        return NotCarriedOut("not begun before the stop's deadline")
    try:
        return job()
    except Exception as exc:
        return exc
