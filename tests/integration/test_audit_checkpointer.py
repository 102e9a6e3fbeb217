"""The elected checkpointer on the real broker, and the `katagate audit` commands."""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY

from katagate import audit_cmd
from katagate.audit.chain import ZERO_HEAD
from katagate.audit.checkpoint import decode
from katagate.audit.checkpointer import OpenRange, _show_waiting, checkpoint_once, run_checkpointer
from katagate.audit.keys import load_or_create
from katagate.audit.metrics import TRANSACTIONS
from katagate.audit.reading import from_message, new_consumer
from katagate.audit.settings import AuditSettings
from katagate.audit.verify import verify
from katagate.eventlog.broker import free_port
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import MailEvent
from tests.integration.kafka_read import read_all
from tests.unit.fixtures.events import MESSAGE_ID, sample_events

pytestmark = pytest.mark.kafka


def write_samples(kafka: KafkaSettings) -> int:
    names = TopicNames(kafka.topic_prefix)
    producer = TransactionalProducer(kafka, f"{kafka.topic_prefix}-test-writer")
    producer.begin()
    records = [Outgoing.event(names.mail if isinstance(e, MailEvent) else names.control, e)
               for e in sample_events()]
    producer.produce(records)
    producer.commit()
    producer.close()
    return len(records)


def test_the_elected_checkpointer_covers_new_records(
        make_kafka_settings: Callable[..., KafkaSettings], tmp_path: Path) -> None:
    kafka = make_kafka_settings()
    settings = AuditSettings(key_dir=tmp_path, every_records=5, every_s=0.3, instance_id="a1")
    stop = threading.Event()
    thread = threading.Thread(target=run_checkpointer, args=(kafka, settings, stop), daemon=True)
    transactions_before = TRANSACTIONS._value.get()
    thread.start()
    try:
        written = write_samples(kafka)
        public_key = load_or_create(tmp_path).public_key
        deadline = time.monotonic() + 30
        while True:
            report = verify(kafka, kafka.topic_prefix, TopicNames(kafka.topic_prefix).audit,
                            public_key)
            if report.ok and not report.notes and report.records == written:
                break
            assert time.monotonic() < deadline, report.lines()
            time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    checkpoints = [decode(r.value) for r in read_all(kafka,
                                                     TopicNames(kafka.topic_prefix).audit)]
    # every 5 records: ranges of at most 5, chained
    assert all(cp.count <= 5 for cp in checkpoints)
    assert sum(cp.count for cp in checkpoints) == written
    # Each write of checkpoints is a transaction of its own.
    assert TRANSACTIONS._value.get() >= transactions_before + 1


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="katagate")
    audit_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


def test_the_commands_checkpoint_verify_and_export(
        make_kafka_settings: Callable[..., KafkaSettings], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    kafka = make_kafka_settings()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", kafka.topic_prefix)
    monkeypatch.setenv("KATAGATE_AUDIT_KEY_DIR", str(tmp_path / "key"))
    write_samples(kafka)

    assert run_cli(["audit", "checkpoint", "once"]) == 0
    written = capsys.readouterr().out.split()
    assert int(written[0]) >= 2  # a mail partition or two, and control
    assert written[1:3] == ["checkpoints", "written"]
    assert run_cli(["audit", "verify", "--public-key", str(tmp_path / "key" / "audit.pub")]) == 0
    assert "audit verify: ok" in capsys.readouterr().out

    assert run_cli(["audit", "export", "--message", MESSAGE_ID]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines
    assert all(line["event"]["message_id"] == MESSAGE_ID for line in lines)
    assert all(line["checkpoint"]["verified"] for line in lines)
    assert [line["offset"] for line in lines] == sorted(line["offset"] for line in lines)

    other = tmp_path / "other"
    load_or_create(other)
    assert run_cli(["audit", "verify", "--public-key", str(other / "audit.pub")]) == 1
    assert "bad signature" in capsys.readouterr().out


def scrape(port: int) -> dict[str, float]:
    """The audit samples of the checkpointer's /metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("katagate_audit_")}


def test_given_the_checkpointer_serves_metrics_then_they_show_records_waiting_then_covered(
        make_kafka_settings: Callable[..., KafkaSettings], tmp_path: Path) -> None:
    kafka = make_kafka_settings()
    port = free_port()
    settings = AuditSettings(key_dir=tmp_path, every_records=1000, every_s=4, instance_id="m1",
                             metrics_port=port)
    control = 'katagate_audit_{}{{partition="0",topic="control"}}'
    stop = threading.Event()
    thread = threading.Thread(target=run_checkpointer, args=(kafka, settings, stop), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while control.format("uncovered_records") not in (seen := _scrape_or_empty(port)):
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        # Given an owner that has checkpointed nothing yet: never signed, nothing waiting
        assert seen[control.format("last_checkpoint_timestamp_seconds")] == 0
        assert seen["katagate_audit_checkpoint_every_records"] == 1000
        # When records arrive, then they show as uncovered until the checkpoint (every_s)
        before = time.time()
        write_samples(kafka)
        waiting = covered = False
        while not covered:
            seen = scrape(port)
            waiting = waiting or seen[control.format("uncovered_records")] > 0
            covered = seen[control.format("last_checkpoint_timestamp_seconds")] >= before - 1
            assert time.monotonic() < deadline + 30, seen
            time.sleep(0.1)
        assert waiting
        # Then the checkpoint's time is shown and nothing waits
        deadline = time.monotonic() + 10
        while scrape(port)[control.format("uncovered_records")] != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def _scrape_or_empty(port: int) -> dict[str, float]:
    try:
        return scrape(port)
    except OSError:
        return {}


def test_given_records_the_checkpointer_has_not_read_yet_then_they_count_as_not_covered(
        make_kafka_settings: Callable[..., KafkaSettings]) -> None:
    """A reader that falls behind (or stalls) holds few records in its open range; the records
    past the last checkpoint are those plus the ones it has not read, up to the partition's end."""
    kafka = make_kafka_settings()
    mail = TopicNames(kafka.topic_prefix).mail
    producer = TransactionalProducer(kafka, f"{kafka.topic_prefix}-test-writer")
    producer.begin()
    producer.produce([Outgoing(topic=mail, value=b"r%d" % n, key=b"k", partition=0)
                      for n in range(10)])
    producer.commit()
    producer.close()
    consumer = new_consumer(kafka)
    mail_0 = {"topic": "mail", "partition": "0"}
    try:
        # Given a reader of mail[0] that has read one record of ten
        consumer.assign([TopicPartition(mail, 0, 0)])
        deadline = time.monotonic() + 30
        while not (read := [m for m in consumer.consume(1, 1.0) if m.error() is None]):
            assert time.monotonic() < deadline
        open_range = OpenRange.after(ZERO_HEAD, 0)
        open_range.add(from_message(read[0]), time.monotonic())
        # When the waiting records are shown
        _show_waiting(consumer, {("mail", 0): open_range}, {mail: "mail"})
        # Then the nine not read count too: the offsets up to the partition's end, which while
        # unread include the transaction's commit marker (an upper bound by the markers)
        assert shown(mail_0) == 1 + 9 + 1
        # Given the reader has read the rest, when shown, then the ten wait (the marker read
        # past counts no more)
        while open_range.count < 10:
            for message in consumer.consume(10, 1.0):
                if message.error() is None:
                    open_range.add(from_message(message), time.monotonic())
            assert time.monotonic() < deadline
        _show_waiting(consumer, {("mail", 0): open_range}, {mail: "mail"})
        assert shown(mail_0) == 10
    finally:
        consumer.close()


def shown(labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value("katagate_audit_uncovered_records", labels)


def test_given_a_failed_write_then_the_owner_keeps_showing_its_waiting_records(
        make_kafka_settings: Callable[..., KafkaSettings], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The owner starts over after a failed write (here: fenced by `checkpoint once`); its
    records still wait, so its gauges stay while it starts over, and an alert on them goes on."""
    kafka = make_kafka_settings()
    port = free_port()
    settings = AuditSettings(key_dir=tmp_path, every_records=1000, every_s=1.5, instance_id="f1",
                             metrics_port=port)
    control = 'katagate_audit_uncovered_records{partition="0",topic="control"}'
    stop = threading.Event()
    thread = threading.Thread(target=run_checkpointer, args=(kafka, settings, stop), daemon=True)
    caplog.set_level(logging.WARNING, logger="katagate.audit.checkpointer")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while control not in _scrape_or_empty(port):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # Given records the owner holds, when another writer fences it before its checkpoint
        write_samples(kafka)
        while scrape(port)[control] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        checkpoint_once(kafka, load_or_create(tmp_path))
        while "audit checkpointer stopped" not in caplog.text:
            assert time.monotonic() < deadline + 10, caplog.text
            time.sleep(0.05)
        # Then, while it starts over, its gauges are still there
        assert control in scrape(port)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
