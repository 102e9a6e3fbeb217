"""The scanner stage against the emulator on real sockets and the real broker: admitted messages
are submitted, their states polled in batches, verdicts recorded with their detects, finished
scans deleted; every injected fault leaves the scanner running and the scans recorded with their
reason."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import uuid

import pytest

from katagate.eventlog.topics import TopicNames
from katagate.kata_emulator.store import Store
from katagate.scanner.metrics import TRANSACTIONS
from katagate.scanner.run import run_scanner
from katagate.scanner.settings import ScannerSettings
from katagate.schemas import ScanFailed, ScanSubmitted, VerdictReceived, decode_event
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import Emulator, configure_kata, inject_admitted, wait_for

pytestmark = pytest.mark.kafka

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
INDICATOR_BODY = b"a file whose hash the KATA rules list"


def message(body: bytes, attachment: bytes | None = None) -> bytes:
    head = (b"From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: test\r\n"
            b"MIME-Version: 1.0\r\n")
    if attachment is None:
        return head + b"Content-Type: text/plain\r\n\r\n" + body + b"\r\n"
    encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    return (head + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
            b"Content-Type: text/plain\r\n\r\n" + body + b"\r\n--b1\r\n"
            b'Content-Type: application/octet-stream; name="a.bin"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b1--\r\n")


@pytest.fixture
def kata(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({
        "sha256": [{"sha256": hashlib.sha256(INDICATOR_BODY).hexdigest(), "type": "sb",
                    "name": "HEUR:Trojan.Indicator"}],
        "patterns": [{"regex": "CONFIDENTIAL-EXFIL-[0-9]+", "name": "exfil_marker"}],
    }))
    emulator = Emulator(tmp_path / "kata", rules=rules).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def scanner(kafka_settings, kata, tmp_path):
    """A connected scanner: configured, paired and accepted, running in a thread."""
    configure_kata(kafka_settings, kata.port, poll_interval_s=1)
    settings = ScannerSettings(state_dir=tmp_path / "gateway", instance_id="scanner-0",
                               recheck_s=0.3, request_timeout_s=3)
    stop = threading.Event()
    thread = threading.Thread(target=run_scanner, args=(kafka_settings, settings, stop),
                              daemon=True)
    thread.start()
    (sensor,) = wait_for(kata.sensors, what="the sensor's integration request")
    kata.cli("sensors", "accept", sensor["sensorId"])
    wait_for(lambda: "connected" in connection_states(kafka_settings), what="connected")
    yield thread
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


def connection_changes(settings):
    topic = TopicNames(settings.topic_prefix).control
    return [e for e in (decode_event(r.value) for r in read_all(
        settings.bootstrap_servers, topic)) if e.type == "connection.state_changed"]


def connection_states(settings):
    return [e.state for e in connection_changes(settings)]


def mail_events(settings, message_id=None):
    topic = TopicNames(settings.topic_prefix).mail
    events = [decode_event(r.value) for r in read_all(settings, topic)]
    return [e for e in events if message_id is None or e.message_id == message_id]


def verdict_of(settings, message_id, timeout_s=60.0):
    def found():
        return next((e for e in mail_events(settings, message_id)
                     if isinstance(e, VerdictReceived)), None)
    return wait_for(found, timeout_s, f"the verdict of {message_id}")


def new_id() -> str:
    return uuid.uuid4().hex


def test_verdicts_are_recorded_with_their_detects_and_finished_scans_deleted(
    kafka_settings, kata, scanner
):
    cases = {
        "eicar": (message(b"see attachment", attachment=EICAR), "detect",
                  ("am", "EICAR-Test-File")),
        "clean": (message(b"hello, nothing to see"), "not_detected", None),
        "yara": (message(b"ref CONFIDENTIAL-EXFIL-42"), "detect", ("yara", "exfil_marker")),
        "sha": (INDICATOR_BODY, "detect", ("sb", "HEUR:Trojan.Indicator")),
    }
    ids = {name: new_id() for name in cases}
    scans_before = TRANSACTIONS.labels("scans", "committed")._value.get()
    for name, (raw, _state, _detect) in cases.items():
        inject_admitted(kafka_settings, ids[name], raw)

    for name, (_raw, state, detect) in cases.items():
        verdict = verdict_of(kafka_settings, ids[name])
        assert verdict.state == state, name
        if detect is not None:
            assert [(d.type, d.name) for d in verdict.detects] == [detect], name
        submitted = [e for e in mail_events(kafka_settings, ids[name])
                     if isinstance(e, ScanSubmitted)]
        assert len(submitted) == 1, name
    # Submissions and verdicts are recorded in the scanner's own transactions (at least one
    # of each); the connection's events in the lifecycle's.
    assert TRANSACTIONS.labels("scans", "committed")._value.get() >= scans_before + 2
    assert TRANSACTIONS.labels("lifecycle", "committed")._value.get() >= 1

    store = Store(kata.state)
    (sensor,) = kata.sensors()
    wait_for(lambda: store.scan_states(sensor["sensorId"], time.time()) == [], 15,
             "finished scans deleted on the Central Node")


def failures(settings, message_id):
    return [e for e in mail_events(settings, message_id) if isinstance(e, ScanFailed)]


def test_a_413_is_final_and_the_message_skipped(kafka_settings, kata, scanner):
    kata.cli("faults", "set", "--max-object-bytes", "200")
    big = new_id()
    inject_admitted(kafka_settings, big, message(b"x" * 1000))
    (failed,) = wait_for(lambda: failures(kafka_settings, big), what="the 413")
    assert (failed.reason, failed.final) == ("too_large", True)
    assert scanner.is_alive()


def test_a_429_is_retried_until_the_central_node_has_room(kafka_settings, kata, scanner):
    kata.cli("faults", "set", "--concurrency-limit", "1", "--latency", "2")
    first, second = new_id(), new_id()
    inject_admitted(kafka_settings, first, message(b"one"))
    inject_admitted(kafka_settings, second, message(b"two"))
    assert verdict_of(kafka_settings, first).state == "not_detected"
    assert verdict_of(kafka_settings, second).state == "not_detected"
    busy = [f for m in (first, second) for f in failures(kafka_settings, m)]
    assert busy, "the second submission should have met the concurrency limit"
    assert all((f.reason, f.final) == ("busy", False) for f in busy)


@pytest.mark.parametrize(
    ("fault", "reason", "connection_state"),
    [(("--error-rate", "1"), "server_error", "error"),
     (("--malformed-rate", "1"), "garbage", None),
     (("--hang-rate", "1", "--hang-seconds", "6"), "unreachable", "unreachable")],
)
def test_a_fault_is_recorded_with_its_reason_and_the_scan_completes_after_it(
    kafka_settings, kata, scanner, fault, reason, connection_state
):
    kata.cli("faults", "set", "--latency", "0")
    ok_first = new_id()
    inject_admitted(kafka_settings, ok_first, message(b"before the fault"))
    verdict_of(kafka_settings, ok_first)
    changes_before = len(connection_changes(kafka_settings))

    kata.cli("faults", "set", *fault)
    victim = new_id()
    inject_admitted(kafka_settings, victim, message(b"during the fault"))

    # A fault that every request meets is found by whichever request comes first: the
    # victim's submission (a ScanFailed on the message) or the lifecycle's periodic check
    # (the connection leaves "connected", and submissions wait for it to come back).
    def recorded():
        on_scan = [f for f in failures(kafka_settings, victim) if f.reason == reason]
        on_connection = [c for c in connection_changes(kafka_settings)[changes_before:]
                         if c.state == connection_state and c.detail]
        return on_scan or on_connection

    first = wait_for(recorded, what=f"a {reason} failure")[0]
    if isinstance(first, ScanFailed):
        assert not first.final
    assert scanner.is_alive()

    kata.cli("faults", "set", "--error-rate", "0", "--malformed-rate", "0", "--hang-rate", "0")
    assert verdict_of(kafka_settings, victim, timeout_s=90).state == "not_detected"


def test_a_restarted_scanner_rebuilds_from_the_log_and_does_not_resubmit(
    kafka_settings, kata, tmp_path, caplog
):
    configure_kata(kafka_settings, kata.port, poll_interval_s=1)
    settings = ScannerSettings(state_dir=tmp_path / "gateway", instance_id="scanner-0",
                               recheck_s=0.3, request_timeout_s=3)

    def start():
        stop = threading.Event()
        thread = threading.Thread(target=run_scanner, args=(kafka_settings, settings, stop),
                                  daemon=True)
        thread.start()
        return stop, thread

    stop, thread = start()
    (sensor,) = wait_for(kata.sensors, what="the sensor's integration request")
    kata.cli("sensors", "accept", sensor["sensorId"])
    kata.cli("faults", "set", "--latency", "4")
    waiting = new_id()
    inject_admitted(kafka_settings, waiting, message(b"slow to scan"))
    wait_for(lambda: [e for e in mail_events(kafka_settings, waiting)
                      if isinstance(e, ScanSubmitted)], what="the submission")
    stop.set()
    thread.join(timeout=30)

    caplog.set_level(logging.INFO, logger="katagate.scanner.service")
    stop, thread = start()  # same identity, a fresh process state
    try:
        assert verdict_of(kafka_settings, waiting).state == "not_detected"
    finally:
        stop.set()
        thread.join(timeout=30)
    events = mail_events(kafka_settings, waiting)
    assert sum(isinstance(e, ScanSubmitted) for e in events) == 1
    assert sum(isinstance(e, VerdictReceived) for e in events) == 1
    # and its partition was rebuilt from the restore point the first one committed on its
    # way out: where the oldest live scan (the waiting message) was received
    (where,) = [r for r in read_all(kafka_settings,
                                    TopicNames(kafka_settings.topic_prefix).mail)
                if decode_event(r.value).type == "mail.received"
                and decode_event(r.value).message_id == waiting]
    assert f"partition {where.partition} rebuilt from offset {where.offset} " in caplog.text
