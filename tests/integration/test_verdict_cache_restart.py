"""The verdict cache is state folded from the log: a scanner restarted after a verdict still
reuses it (real broker, the emulator counting the scans it was sent)."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid

import pytest

from katagate.scanner.run import run_scanner
from katagate.scanner.settings import ScannerSettings
from tests.integration.kata_harness import Emulator, configure_kata, inject_admitted, wait_for
from tests.integration.test_kata_scanning import connection_states, mail_events, verdict_of

pytestmark = pytest.mark.kafka


def raw(body: bytes) -> bytes:
    return b"From: a@example.org\r\nTo: b@example.net\r\nSubject: t\r\n\r\n" + body + b"\r\n"


def test_given_a_cached_verdict_when_the_scanner_restarts_then_identical_content_reuses_it(
        kafka_settings, tmp_path):
    emulator = Emulator(tmp_path / "kata").start()
    configure_kata(kafka_settings, emulator.port, poll_interval_s=1)
    settings = ScannerSettings(state_dir=tmp_path / "gateway", instance_id="scanner-0",
                               recheck_s=0.3, request_timeout_s=3)

    def start() -> tuple[threading.Event, threading.Thread]:
        stop = threading.Event()
        thread = threading.Thread(target=run_scanner, args=(kafka_settings, settings, stop),
                                  daemon=True)
        thread.start()
        return stop, thread

    def scans_sent() -> int:
        return sum(json.loads(emulator.cli("scans", "count").stdout).values())

    stop, thread = start()
    try:
        (sensor,) = wait_for(emulator.sensors, what="the sensor's integration request")
        emulator.cli("sensors", "accept", sensor["sensorId"])
        wait_for(lambda: "connected" in connection_states(kafka_settings), what="connected")
        # Given a verdict for some content, then another message's scan, so that no scan is
        # live when the scanner stops (its restore point would pass a finished scan)
        same, other = raw(b"the same bytes"), raw(b"other bytes")
        first, later = uuid.uuid4().hex, uuid.uuid4().hex
        inject_admitted(kafka_settings, first, same,
                        content_sha256=hashlib.sha256(same).hexdigest())
        assert verdict_of(kafka_settings, first).cached_from is None
        inject_admitted(kafka_settings, later, other,
                        content_sha256=hashlib.sha256(other).hexdigest())
        verdict_of(kafka_settings, later)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert scans_sent() == 2
    # When the scanner restarts and the same content comes again
    stop, thread = start()
    try:
        again = uuid.uuid4().hex
        inject_admitted(kafka_settings, again, same,
                        content_sha256=hashlib.sha256(same).hexdigest())
        verdict = verdict_of(kafka_settings, again)
    finally:
        stop.set()
        thread.join(timeout=30)
        emulator.stop()
    # Then it takes the first scan's verdict, rebuilt from the log, and KATA is not asked
    assert (verdict.state, verdict.cached_from) == ("not_detected", first)
    assert [e.type for e in mail_events(kafka_settings, again)] == [
        "mail.received", "quarantine.admitted", "scan.verdict"]
    assert scans_sent() == 2
