"""`katagate audit verify` on the real broker against the two quiet ways to lose the log's end:
records left uncovered past the grace period (or no checkpoint at all), and a log rolled back to
an earlier checkpoint — caught by the witness the checkpointer keeps outside Kafka."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from katagate.eventlog.clients import new_producer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from tests.integration.test_audit_checkpointer import run_cli, write_samples
from tests.integration.test_audit_tamper import copy_into, snapshot
from tests.unit.fixtures.events import sample_events

pytestmark = pytest.mark.kafka

TWENTY_MINUTES_MS = 20 * 60 * 1000


def use(monkeypatch: pytest.MonkeyPatch, kafka: KafkaSettings) -> None:
    """The CLI's environment names this namespace."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", kafka.topic_prefix)


def write_old(kafka: KafkaSettings, count: int) -> None:
    """`count` mail events into mail[0], stamped twenty minutes ago (the producer sets the
    record's timestamp, as a writer whose records were never checkpointed would have)."""
    producer = new_producer(kafka, {"enable.idempotence": True, "acks": "all"})
    stamp = int(time.time() * 1000) - TWENTY_MINUTES_MS
    events = [e for e in sample_events() if e.type.startswith("mail.")]
    for n in range(count):
        record = Outgoing.event(TopicNames(kafka.topic_prefix).mail, events[n % len(events)])
        producer.produce(record.topic, value=record.value, key=record.key,
                         headers=list(record.headers), partition=0, timestamp=stamp)
    assert producer.flush(30) == 0


def verify_cli(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = run_cli(["audit", "verify", *extra])
    return code, capsys.readouterr().out


def test_given_old_records_no_checkpoint_covers_when_verified_then_it_fails_naming_them(
        make_kafka_settings: Callable[..., KafkaSettings], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    kafka = make_kafka_settings()
    use(monkeypatch, kafka)
    monkeypatch.setenv("KATAGATE_AUDIT_KEY_DIR", str(tmp_path / "key"))
    mail0 = f"{TopicNames(kafka.topic_prefix).mail}[0]"

    # Given records written twenty minutes ago and no checkpoint at all
    write_old(kafka, 4)
    run_cli(["audit", "checkpoint", "once"])  # makes the key; checkpoints everything
    capsys.readouterr()
    # (an empty audit topic: a fresh namespace, the same records, the same key)
    bare = make_kafka_settings()
    use(monkeypatch, bare)
    write_old(bare, 4)
    code, out = verify_cli(capsys)
    assert code == 1
    assert f"FAIL {bare.topic_prefix}.audit: no checkpoint signed by this key at all" in out
    assert (f"FAIL {bare.topic_prefix}.mail[0] offsets 0\N{EN DASH}3: no checkpoint covers 4 "
            "records older than the grace period (900 s;") in out

    # When the original is checkpointed, then it verifies
    use(monkeypatch, kafka)
    assert verify_cli(capsys)[0] == 0

    # When three more old records arrive after the checkpoint, then they are named
    write_old(kafka, 3)
    code, out = verify_cli(capsys)
    assert code == 1
    assert (f"FAIL {mail0} offsets 4\N{EN DASH}6: no checkpoint covers 3 records older than "
            "the grace period") in out
    # ... and a grace longer than their age makes them merely not yet covered
    monkeypatch.setenv("KATAGATE_AUDIT_GRACE_S", "3600")
    code, out = verify_cli(capsys)
    assert code == 0, out
    assert f"note {mail0} records after the last checkpoint (from offset 4)" in out


def test_given_a_witness_when_the_log_is_rolled_back_then_verify_names_both_checkpoints(
        kafka_bootstrap: str, make_kafka_settings: Callable[..., KafkaSettings], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    kafka = make_kafka_settings()
    use(monkeypatch, kafka)
    monkeypatch.setenv("KATAGATE_AUDIT_KEY_DIR", str(tmp_path / "key"))
    share = tmp_path / "share"
    share.mkdir()
    monkeypatch.setenv("KATAGATE_AUDIT_WITNESS", str(share))
    witness = share / f"{kafka.topic_prefix}.witness.jsonl"

    # Given two rounds of checkpoints, each appended to the witness folder's file
    write_samples(kafka)
    assert run_cli(["audit", "checkpoint", "once"]) == 0
    first_logs, first_audit = snapshot(kafka)
    first_lines = len(witness.read_text().splitlines())
    write_samples(kafka)
    assert run_cli(["audit", "checkpoint", "once"]) == 0
    assert len(witness.read_text().splitlines()) > first_lines > 0
    assert verify_cli(capsys, "--witness", str(share))[0] == 0

    # When the log is rolled back to the first round (its records and checkpoints only)
    rolled = copy_into(kafka_bootstrap, first_logs, first_audit)
    use(monkeypatch, rolled)
    # Then verify alone sees nothing wrong, and with the witness it fails naming both
    assert verify_cli(capsys)[0] == 0
    code, out = verify_cli(capsys, "--witness", str(witness))
    assert code == 1
    assert (f"FAIL {rolled.topic_prefix}.control[0]: rolled back: the log's latest checkpoint "
            "(checkpoint ") in out
    assert ") is older than the witness's (offsets " in out
    assert f"; {witness} line " in out

    # When the rolled-back log is continued past where the witness stands, then still caught
    monkeypatch.setenv("KATAGATE_AUDIT_WITNESS", str(tmp_path / "elsewhere.jsonl"))
    for _ in range(3):
        write_samples(rolled)
    assert run_cli(["audit", "checkpoint", "once"]) == 0
    assert verify_cli(capsys)[0] == 0
    code, out = verify_cli(capsys, "--witness", str(witness))
    assert code == 1
    assert f"FAIL {rolled.topic_prefix}.control[0]: rewritten: the witness's (offsets " in out
    assert "is not in the log" in out
