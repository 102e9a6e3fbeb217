"""The verifier's pure core: ranges, continuity and signatures over in-memory records."""

from __future__ import annotations

from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from katagate.audit.chain import ZERO_HEAD, LogRecord, chain_head
from katagate.audit.checkpoint import Checkpoint, sign
from katagate.audit.keys import key_id
from katagate.audit.verify import Entry, Finding, RangeChecker, check_continuity, check_signatures

KEY = Ed25519PrivateKey.generate()
LABEL = "katagate.mail[2]"


def log(n: int) -> list[LogRecord]:
    # Offsets step by 2, as if transaction markers sat between records.
    return [LogRecord("katagate.mail", 2, 2 * i, b"m", f"event {i}".encode()) for i in range(n)]


def checkpoints(records: list[LogRecord], size: int) -> list[Entry]:
    entries, head = [], ZERO_HEAD
    for index, start in enumerate(range(0, len(records), size)):
        part = records[start:start + size]
        new = chain_head(part, head)
        cp = sign(Checkpoint(
            namespace="katagate", topic="mail", partition=2, position=start, count=len(part),
            first_offset=part[0].offset, last_offset=part[-1].offset, previous_head=head.hex(),
            head=new.hex(), created_at="2025-03-14T09:26:53+00:00",
            key_id=key_id(KEY.public_key())), KEY)
        entries.append(Entry(index, index * 2, cp))
        head = new
    return entries


def check(records: list[LogRecord], entries: list[Entry]) -> tuple[list[Finding], list[Finding]]:
    checker = RangeChecker(LABEL, entries)
    for record in records:
        checker.feed(record)
    failures, notes = checker.finish()
    return check_continuity(LABEL, entries) + failures, notes


def test_an_untouched_log_verifies_and_the_tail_is_a_note() -> None:
    records = log(30)
    failures, notes = check(records + log(35)[30:], checkpoints(records, 10))
    assert failures == []
    assert [n.message for n in notes] == [
        "katagate.mail[2] records after the last checkpoint (from offset 60): "
        "not yet covered (5 records)"]


def test_a_changed_record_fails_only_its_range() -> None:
    records, entries = log(30), checkpoints(log(30), 10)
    records[14] = LogRecord("katagate.mail", 2, 28, b"m", b"changed")
    failures, _ = check(records, entries)
    assert [f.message for f in failures] == [
        "katagate.mail[2] offsets 20\N{EN DASH}38: chain head differs from the signed "
        "checkpoint (checkpoint 1)"]


def test_swapped_records_fail_their_range() -> None:
    records, entries = log(30), checkpoints(log(30), 10)
    records[3], records[4] = records[4], records[3]
    failures, _ = check(records, entries)
    assert [(f.first_offset, f.last_offset) for f in failures] == [(0, 18)]


def test_a_dropped_record_fails_its_range_first() -> None:
    records, entries = log(30), checkpoints(log(30), 10)
    del records[25]
    failures, _ = check(records, entries)
    assert [(f.first_offset, f.last_offset) for f in failures] == [(40, 58)]
    assert "signed records are missing" in failures[0].message


def test_a_removed_checkpoint_is_a_gap_in_continuity() -> None:
    entries = checkpoints(log(30), 10)
    failures, _ = check(log(30), [entries[0], entries[2]])
    assert [(f.first_offset, f.last_offset, f.checkpoint) for f in failures] == [(19, 39, 2)]
    assert "a checkpoint was removed" in failures[0].message


def test_a_removed_first_checkpoint_is_a_gap_from_offset_0() -> None:
    entries = checkpoints(log(30), 10)
    failures, _ = check(log(30), entries[1:])
    assert [(f.first_offset, f.last_offset) for f in failures] == [(0, 19)]


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    entries = checkpoints(log(20), 10)
    forged = Entry(5, 9, sign(entries[1].checkpoint, Ed25519PrivateKey.generate()))
    valid, findings = check_signatures([entries[0], forged], KEY.public_key(),
                                       {"mail": "katagate.mail"})
    assert valid == [entries[0]]
    assert [f.message for f in findings] == [
        "checkpoint 5 (katagate.mail[2] offsets 20\N{EN DASH}38): bad signature"]


def stamped(n: int, ms: int) -> list[LogRecord]:
    return [replace(r, timestamp_ms=ms) for r in log(n)]


def test_given_an_uncovered_tail_older_than_the_grace_when_checked_then_it_fails() -> None:
    # Given 30 covered records and 5 uncovered ones written at t=1000 s, grace 900 s, now 2000 s
    records = stamped(35, 1_000_000)
    checker = RangeChecker(LABEL, checkpoints(records[:30], 10), stale_before_ms=1_100_000,
                           grace_s=900)
    for record in records:
        checker.feed(record)
    failures, notes = checker.finish()
    # Then the partition and the offsets of the stale records are named
    assert [(f.topic, f.first_offset, f.last_offset) for f in failures] == [
        ("katagate.mail", 60, 68)]
    assert failures[0].message.startswith(
        "katagate.mail[2] offsets 60\N{EN DASH}68: no checkpoint covers 5 records older than "
        "the grace period (900 s; the first written 1970-01-01T00:16:40+00:00)")
    assert len(notes) == 1


def test_given_an_uncovered_tail_within_the_grace_when_checked_then_it_is_only_a_note() -> None:
    records = stamped(30, 1_000_000) + stamped(35, 1_200_000)[30:]
    checker = RangeChecker(LABEL, checkpoints(records[:30], 10), stale_before_ms=1_100_000,
                           grace_s=900)
    for record in records:
        checker.feed(record)
    failures, notes = checker.finish()
    assert failures == []
    assert [n.first_offset for n in notes] == [60]
