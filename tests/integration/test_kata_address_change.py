"""Moving the Central Node under load, on real sockets and the real broker: two emulators with
different keys, on two loopback addresses; the administrator changes the address from the first
to the second while messages keep arriving. Nothing reaches the second before
its key is pinned, and the state window, folded from the log alone, reads Connecting, then
Connected with the second's fingerprint."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from contextlib import closing
from functools import reduce
from ipaddress import IPv4Address

import pytest

from katagate.kata_emulator.store import DB_FILE, Store
from katagate.projector import connection
from katagate.scanner.identity import load_or_create
from katagate.scanner.run import run_scanner
from katagate.scanner.settings import ScannerSettings
from katagate.schemas import CentralNodeObserved, NodeAddress, ScanSubmitted
from tests.integration.kafka_read import control_events
from tests.integration.kata_harness import Emulator, configure_kata, inject_admitted, wait_for
from tests.integration.test_kata_scanning import mail_events, message

pytestmark = pytest.mark.kafka


def scans_at(emulator: Emulator) -> list[tuple[str, float]]:
    """(scanId, when it arrived) of every submission the emulator took, read from its store."""
    with closing(sqlite3.connect(emulator.state / DB_FILE, timeout=30)) as conn:
        rows = conn.execute("SELECT scan_id, submitted_at FROM scans").fetchall()
    return [(scan_id, at) for scan_id, at in rows]


class Arrivals:
    """Every submission an emulator took, sampled from its store as the test runs: the scanner
    deletes a scan at KATA once it has its verdict, so a read after the run may find none."""

    def __init__(self, emulator: Emulator) -> None:
        self.seen: dict[str, float] = {}
        self._emulator, self._stop = emulator, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for scan_id, at in scans_at(self._emulator):
                self.seen.setdefault(scan_id, at)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_moving_the_central_node_under_load_sends_nothing_before_the_new_key_is_pinned(
        kafka_settings, tmp_path):
    first = Emulator(tmp_path / "kata-1").start()
    second = Emulator(tmp_path / "kata-2", host="127.0.0.2").start()
    assert first.fingerprint != second.fingerprint
    settings = ScannerSettings(state_dir=tmp_path / "gateway", instance_id="scanner-0",
                               recheck_s=0.3, request_timeout_s=3)
    identity = load_or_create(settings.sensor_dir)
    # The second node's administrator accepted our sensor in advance: nothing but the pin
    # stands between a message and the second node.
    Store(second.state).authorize(identity.sensor_id, identity.fingerprint,
                                  identity.certificate_pem, "127.0.0.1", time.time())
    second.cli("sensors", "accept", identity.sensor_id)
    # A poll interval long enough that a scanner trusting the stale Connected would submit for
    # seconds before the next scheduled check.
    configure_kata(kafka_settings, first.port, poll_interval_s=5)
    stop, load_stop = threading.Event(), threading.Event()
    scanner = threading.Thread(target=run_scanner, args=(kafka_settings, settings, stop),
                               daemon=True)
    injected: list[str] = []

    def load() -> None:
        while not load_stop.is_set():
            message_id = uuid.uuid4().hex
            inject_admitted(kafka_settings, message_id, message(f"load {message_id}".encode()))
            injected.append(message_id)
            time.sleep(0.05)

    loader = threading.Thread(target=load, daemon=True)
    try:
        scanner.start()
        wait_for(first.sensors, what="the integration request at the first node")
        first.cli("sensors", "accept", identity.sensor_id)
        loader.start()
        wait_for(lambda: len(scans_at(first)) >= 10, 60, "load reaching the first node")
        at_second = Arrivals(second)  # from before the move: every scan it ever held

        # When the administrator moves the Central Node to the second node, under load
        configure_kata(kafka_settings, second.port, version=2, address="127.0.0.2",
                       poll_interval_s=5)
        second_node = NodeAddress(address=IPv4Address("127.0.0.2"), port=second.port)

        def pinned_second() -> CentralNodeObserved | None:
            return next((e for e in control_events(kafka_settings)
                         if isinstance(e, CentralNodeObserved) and e.pinned
                         and e.central_node == second_node), None)

        pin = wait_for(pinned_second, 60, "the second node's key pinned")
        wait_for(lambda: len(at_second.seen) >= 10, 60, "load reaching the second node")
        at_second.stop()
    finally:
        load_stop.set()
        if loader.is_alive():
            loader.join(timeout=30)
        stop.set()
        scanner.join(timeout=30)
        first.stop()
        second.stop()

    # Then nothing arrived at the second node before its key was pinned
    assert min(at_second.seen.values()) >= pin.occurred_at.timestamp()
    assert pin.fingerprint == second.fingerprint
    assert pin.producer.stage == "scanner"
    submitted_to_second = [e for e in mail_events(kafka_settings)
                           if isinstance(e, ScanSubmitted) and e.central_node == second_node]
    assert submitted_to_second
    assert min(e.occurred_at for e in submitted_to_second) >= pin.occurred_at

    # And the state window, folded from the log alone, read Connecting for the second node,
    # then Connected with its fingerprint pinned
    events = control_events(kafka_settings)
    windows = [connection.render(reduce(connection.evolve, events[:n + 1],
                                        connection.ConnectionView()))
               for n in range(len(events))]
    node = f"127.0.0.2:{second.port}"
    seen = [(w["connection_state"], w["state_central_node"]) for w in windows
            if w["central_node_address"] == "127.0.0.2"]
    assert ("connecting", node) in seen
    assert seen.index(("connecting", node)) < seen.index(("connected", node))
    # (never Connected for the first node once the second was configured)
    assert ("connected", f"127.0.0.1:{first.port}") not in seen
    final = windows[-1]
    assert (final["connection_state"], final["state_central_node"]) == ("connected", node)
    assert final["kata_public_key_fingerprint"] == final["kata_public_key_pinned"] == \
        second.fingerprint
