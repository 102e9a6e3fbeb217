"""Wires one scanner instance: identity, control view, lifecycle owner candidate, scan loop."""

from __future__ import annotations

import logging
import threading

from confluent_kafka.admin import AdminClient

from eventlog.settings import KafkaSettings
from eventlog.topics import ensure_topics
from scanner.control_view import ControlView
from scanner.identity import load_or_create
from scanner.lifecycle import ConnectionService
from scanner.service import ScanService
from scanner.settings import ScannerSettings

log = logging.getLogger(__name__)


def run_scanner(kafka: KafkaSettings, scanner: ScannerSettings, stop: threading.Event) -> None:
    ensure_topics(AdminClient({"bootstrap.servers": kafka.bootstrap_servers}), kafka)
    if scanner.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(scanner.metrics_port, addr="127.0.0.1")
    identity = load_or_create(scanner.sensor_dir)
    log.info("sensor %s, key fingerprint %s", identity.sensor_id, identity.fingerprint)
    lifecycle_view = ControlView(kafka)
    lifecycle = ConnectionService(kafka, scanner, identity, lifecycle_view)
    lifecycle_thread = threading.Thread(
        target=lifecycle.run, args=(stop,), name="kata-lifecycle", daemon=True
    )
    lifecycle_thread.start()
    scans_view = ControlView(kafka)
    scans = ScanService(kafka, scanner, identity, scans_view, lifecycle)
    try:
        while not stop.is_set():
            scans_view.pump(0)
            scans.step()
    finally:
        scans.close()
        scans_view.close()
        lifecycle_thread.join(timeout=30)
        lifecycle_view.close()
