"""The Backup ledger, without a broker: a stored copy is retained with the usage after it; the
oldest go first over the size limit; copies past the age limit in force go at the check (a
lowered setting applies to old copies, a raised one keeps them longer); an administrator's
delete removes a held copy; and usage folded from the ledger's events equals the live one."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from katagate.decider.backup_ledger import BackupLedger, delete, expire, retain
from katagate.decider.ledger import Ledger
from katagate.schemas import (
    BackupRemoved,
    BackupRetained,
    BackupStored,
    Event,
    KataSettings,
    QuarantineReleased,
    RawLocation,
)
from katagate.schemas.control import MIB
from tests.unit.test_decider_core import REF, T0

LIMITS = KataSettings(backup_max_age_days=30, backup_max_bytes=10 * MIB)


def stored(m: str, at_minutes: int = 0, chunks: int = 1) -> BackupStored:
    return BackupStored(
        event_id=UUID(int=hash(m) & (2**64 - 1)), occurred_at=T0 + timedelta(minutes=at_minutes),
        producer=REF, message_id=m, correlation_id=UUID(int=1),
        location=RawLocation(topic="katagate.backup", partition=3,
                             offsets=list(range(10, 10 + chunks)), chunk_bytes=MIB),
        sha256="0" * 64)


def released(m: str, size: int) -> QuarantineReleased:
    return QuarantineReleased(
        event_id=UUID(int=2), occurred_at=T0, producer=REF, message_id=m, size=size,
        cause="action_applied", bytes_in_use=0, messages_in_use=0)


def keep(ledger: BackupLedger, m: str, size: int, at_minutes: int = 0,
         limits: KataSettings = LIMITS) -> list[Event]:
    """The admission shell's steps for one copy: its release, its retention, the size check."""
    ledger.evolve(released(m, size))
    kept = retain(ledger, stored(m, at_minutes), limits, T0 + timedelta(minutes=at_minutes), REF)
    assert kept is not None
    ledger.evolve(kept)
    return [kept, *(e for _c, e in expire(ledger, limits, kept.occurred_at, REF))]


def test_a_stored_copy_is_retained_with_its_size_usage_after_and_expiry():
    # Given an empty Backup and a copy of a 3 MiB message
    ledger = BackupLedger()
    # When the ledger reads its backup.stored
    (kept,) = keep(ledger, "m0000001", 3 * MIB)
    # Then backup.retained: the message's size, the usage after, expiry by the setting in force
    assert isinstance(kept, BackupRetained)
    assert (kept.size, kept.bytes_in_use, kept.copies_in_use) == (3 * MIB, 3 * MIB, 1)
    assert kept.expires_at == T0 + timedelta(days=30)
    assert (kept.max_age_days, kept.limit_bytes) == (30, 10 * MIB)
    assert kept.location.partition == 3
    assert kept.causation_id == stored("m0000001").event_id
    # And a redelivered backup.stored is not retained twice
    assert retain(ledger, stored("m0000001"), LIMITS, T0, REF) is None


def test_over_the_size_limit_the_oldest_copies_go_first():
    # Given 4 MiB + 4 MiB held under a 10 MiB limit
    ledger = BackupLedger()
    keep(ledger, "old00001", 4 * MIB, at_minutes=0)
    keep(ledger, "mid00002", 4 * MIB, at_minutes=1)
    # When a 5 MiB copy arrives
    _kept, *removed = keep(ledger, "new00003", 5 * MIB, at_minutes=2)
    # Then the oldest goes, by size, and usage is within the limit
    assert [(e.message_id, e.cause) for e in removed] == [("old00001", "expired_size")]
    assert isinstance(removed[0], BackupRemoved)
    assert (removed[0].bytes_in_use, removed[0].copies_in_use) == (9 * MIB, 2)
    assert (ledger.bytes_in_use, set(ledger.held)) == (9 * MIB, {"mid00002", "new00003"})


def test_copies_past_the_age_limit_in_force_are_removed_at_the_check():
    # Given copies stored at T0 and one day later, under 30 days
    ledger = BackupLedger()
    keep(ledger, "aaaa0001", MIB, at_minutes=0)
    keep(ledger, "bbbb0002", MIB, at_minutes=24 * 60)
    # When checked just before 30 days: nothing goes
    assert expire(ledger, LIMITS, T0 + timedelta(days=30) - timedelta(seconds=1), REF) == []
    # When checked at 30 days: the first goes, by age
    removed = expire(ledger, LIMITS, T0 + timedelta(days=30), REF)
    assert [(c.message_id, e.cause, e.copies_in_use) for c, e in removed] == [
        ("aaaa0001", "expired_age", 1)]


def test_a_lowered_age_limit_applies_to_old_copies_and_a_raised_one_keeps_them():
    # Given a copy stored under 30 days
    ledger = BackupLedger()
    keep(ledger, "aaaa0001", MIB)
    ten_days = T0 + timedelta(days=10)
    # When the limit is raised to 60 days: at 30 days it is still held
    raised = LIMITS.model_copy(update={"backup_max_age_days": 60})
    assert expire(ledger, raised, T0 + timedelta(days=30), REF) == []
    # When it is lowered to 7 days: at day 10 it goes, under the setting in force
    lowered = LIMITS.model_copy(update={"backup_max_age_days": 7})
    ((_copy, event),) = expire(ledger, lowered, ten_days, REF)
    assert (event.cause, event.max_age_days) == ("expired_age", 7)


def test_an_administrators_delete_removes_a_held_copy_naming_them():
    ledger = BackupLedger()
    keep(ledger, "aaaa0001", 2 * MIB)
    request = UUID(int=99)
    # When an administrator deletes it
    gone = delete(ledger, "aaaa0001", "console:alice", request, LIMITS, T0, REF)
    # Then backup.removed by them, caused by the request, usage after it
    assert gone is not None
    assert (gone.cause, gone.actor, gone.causation_id) == ("deleted_by_admin", "console:alice",
                                                           request)
    assert (gone.bytes_in_use, gone.copies_in_use) == (0, 0)
    ledger.evolve(gone)
    # And a second delete (or one of a copy never held) changes nothing
    assert delete(ledger, "aaaa0001", "console:alice", request, LIMITS, T0, REF) is None


def test_a_copy_without_a_known_size_counts_the_most_its_chunks_hold():
    # Given a copy stored with no release seen (beyond the remembered sizes)
    kept = retain(BackupLedger(), stored("xxxx0009", chunks=2), LIMITS, T0, REF)
    # Then it counts 2 chunks of 1 MiB: never less than it holds
    assert kept is not None
    assert kept.size == 2 * MIB


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["keep", "delete", "tick"]),
                          st.integers(0, 7), st.integers(1, 5)), max_size=40),
       st.integers(1, 10))
def test_usage_stays_within_the_limit_and_the_fold_of_the_ledger_equals_the_live_one(
        steps, limit_mib):
    # Given any interleaving of copies, deletes and checks, under any size limit
    limits = LIMITS.model_copy(update={"backup_max_bytes": limit_mib * MIB,
                                       "backup_max_age_days": 1})
    live = Ledger()
    log: list[Event] = []
    minute = 0
    for kind, n, size in steps:
        minute += 60 * 7
        m = f"m{n:07d}"
        now = T0 + timedelta(minutes=minute)
        if kind == "keep" and m not in live.backup.held:
            log += keep(live.backup, m, size * MIB, minute, limits)
        elif kind == "delete":
            gone = delete(live.backup, m, "cli:root", UUID(int=n), limits, now, REF)
            if gone is not None:
                live.backup.evolve(gone)
                log.append(gone)
        else:
            log += [e for _c, e in expire(live.backup, limits, now, REF)]
        # Then usage is the sum of what is held, within the limit after every step
        assert live.backup.bytes_in_use == sum(c.size for c in live.backup.held.values())
        assert live.backup.bytes_in_use <= limits.backup_max_bytes
        assert live.backup.copies_in_use == len(live.backup.held)
    # And the ledger folded from its events (each read twice: the topic and the mirror) is it
    rebuilt = Ledger()
    for event in log:
        rebuilt.evolve(event)
        rebuilt.evolve(event)
    assert (rebuilt.backup.bytes_in_use, rebuilt.backup.held) == (
        live.backup.bytes_in_use, live.backup.held)
