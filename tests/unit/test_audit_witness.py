"""The witness outside Kafka, pure: appended and read back as JSON lines, and compared with the
log's checkpoints so that a rolled-back (or rolled-back and continued) log is named."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from katagate.audit.chain import LogRecord
from katagate.audit.verify import Entry
from katagate.audit.witness import Witnessed, append, check_witness, read
from tests.unit.test_audit_verify import KEY, checkpoints, log

NAMES = {"mail": "katagate.mail"}
WITNESS = Path("/witness/katagate.witness.jsonl")


def witnessed(entries: list[Entry]) -> list[Witnessed]:
    return [Witnessed(n + 1, e.checkpoint) for n, e in enumerate(entries)]


def test_given_checkpoints_when_appended_then_read_back_in_order(tmp_path: Path) -> None:
    entries = checkpoints(log(30), 10)
    path = tmp_path / "share" / "katagate.witness.jsonl"
    append(path, [e.checkpoint for e in entries[:2]])
    append(path, [entries[2].checkpoint])
    assert read(path) == witnessed(entries)


def test_given_the_log_holds_the_witness_latest_when_checked_then_nothing_is_found() -> None:
    entries = checkpoints(log(30), 10)
    assert check_witness(WITNESS, witnessed(entries[:2]), entries, KEY.public_key(), NAMES) == []


def test_given_a_log_rolled_back_to_an_earlier_checkpoint_then_both_are_named() -> None:
    # Given the witness holds 3 checkpoints, and the log only the first 2 (and their records)
    entries = checkpoints(log(30), 10)
    [finding] = check_witness(WITNESS, witnessed(entries), entries[:2], KEY.public_key(), NAMES)
    assert finding.message == (
        "katagate.mail[2]: rolled back: the log's latest checkpoint (checkpoint 1: offsets "
        "20\N{EN DASH}38, positions up to 19, created 2025-03-14T09:26:53+00:00) is older than "
        "the witness's (offsets 40\N{EN DASH}58, positions up to 29, created "
        "2025-03-14T09:26:53+00:00; /witness/katagate.witness.jsonl line 3)")
    assert (finding.topic, finding.partition, finding.first_offset, finding.last_offset) == (
        "katagate.mail", 2, 39, 58)


def test_given_a_log_rolled_back_and_continued_past_the_witness_then_it_is_named() -> None:
    # Given the log kept the first 10 records, then other records were written and checkpointed
    entries = checkpoints(log(30), 10)
    other = log(10) + [LogRecord("katagate.mail", 2, 2 * i, b"m", b"new") for i in range(10, 40)]
    rewritten = checkpoints(other, 10)
    assert rewritten[0] == entries[0]
    [finding] = check_witness(WITNESS, witnessed(entries), rewritten, KEY.public_key(), NAMES)
    assert finding.message.startswith("katagate.mail[2]: rewritten: the witness's (offsets 40")
    assert "rolled back to before position 30 and continued" in finding.message


def test_given_a_witness_line_signed_by_another_key_then_it_is_a_finding() -> None:
    entries = checkpoints(log(10), 10)
    [finding] = check_witness(WITNESS, witnessed(entries), entries,
                              Ed25519PrivateKey.generate().public_key(), NAMES)
    assert finding.message == "audit witness /witness/katagate.witness.jsonl line 1: bad signature"
