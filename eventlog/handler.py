"""What a stage's handler may implement, in one place.

The transactional loop (`eventlog/loop.py`) calls every method below; the defaults do nothing,
so a handler overrides only what it has. The loop never looks for abilities with `hasattr`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from katagate.eventlog.errors import KatagateError
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.write_ahead import WriteAheadFailed


class Poison(KatagateError):
    """A record that can never be processed (undecodable, invalid): dead-letter it."""


class Handler:
    # A stateful handler's state is the fold of its input partitions: at assignment it is given
    # every record before the committed offset (`restore`), at revocation it `forget`s the
    # partitions, and after an aborted batch it is rebuilt the same way (`eventlog/recovery.py`).
    stateful: ClassVar[bool] = False
    # It also folds the outputs it wrote after the committed offset (`restore_ahead`): outputs
    # are committed with the offsets of the inputs that caused them, so those beyond the
    # committed offset were caused already, and a state without them would decide again.
    folds_own_outputs: ClassVar[bool] = False
    # It writes outputs outside the loop's transaction (eventlog/write_ahead.py): the restore
    # reads its own outputs to the partitions' high watermark, not their last stable offset,
    # waiting out transactions left open by others before them, since the loop may read again
    # inputs before such a transaction whose outcomes were written after it.
    writes_ahead: ClassVar[bool] = False

    def decide(self, record: Consumed) -> Sequence[Outgoing]:
        """Decide on one record: the records to produce, or raise Poison."""
        raise NotImplementedError

    def decide_batch(self, records: Sequence[Consumed]) -> list[Sequence[Outgoing] | Exception]:
        """One result per record, in order: its outputs, or the exception that refused it
        (that record alone goes to the dead-letter topic). A handler whose effects may run
        concurrently decides the whole batch at once here."""
        results: list[Sequence[Outgoing] | Exception] = []
        for record in records:
            try:
                results.append(self.decide(record))
            except WriteAheadFailed:  # not the record's fault: the batch fails and is rebuilt
                raise
            except Exception as exc:  # the loop sets this record aside, the others go on
                results.append(exc)
        return results

    def tick(self) -> Sequence[Outgoing]:
        """Timers: outputs produced in the loop's next transaction, with or without records."""
        return ()

    def restore(self, record: Consumed) -> None:
        """Fold a record that lies before the committed offset (stateful handlers)."""

    def restore_ahead(self, record: Consumed) -> None:
        """Fold a record after the committed offset (handlers that fold their own outputs)."""

    def restore_point(self, topic: str, partition: int) -> int | None:
        """The offset of the oldest record the state still needs, committed with the offset so
        that the next restore begins there (`eventlog/restore_points.py`); None: nothing before
        the committed offset. The default, 0, restores the whole partition."""
        return 0

    def forget(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Drop the state of revoked partitions."""

    def committed(self) -> None:
        """The batch's effects became durable."""

    def aborted(self) -> None:
        """The batch's transaction was aborted; it will be read again."""

    def watch(self, beat: Callable[[float], None]) -> None:
        """The loop's liveness beat (eventlog/health.py), for a handler whose deciding waits on
        others (apply's deliveries): it calls `beat(blocking_s)` as it makes progress,
        `blocking_s` bounding the wait until its next progress."""
