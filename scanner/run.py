"""Wires one scanner instance: identity, control view, lifecycle owner candidate, scan loop."""

from __future__ import annotations

import logging
import threading

from katagate.eventlog.health import Health
from katagate.eventlog.health_server import serve_health
from katagate.eventlog.preflight import prepare_stage
from katagate.eventlog.restart import KAFKA_TROUBLE
from katagate.eventlog.settings import KafkaSettings
from katagate.scanner.control_view import ControlView
from katagate.scanner.identity import load_or_create
from katagate.scanner.lifecycle import ConnectionService
from katagate.scanner.service import ScanService
from katagate.scanner.settings import ScannerSettings

log = logging.getLogger(__name__)


def run_scanner(kafka: KafkaSettings, scanner: ScannerSettings, stop: threading.Event) -> None:
    kafka = prepare_stage(kafka, "scanner")
    health = Health(scanner.health_stall_s)
    metrics = serve_health(scanner.metrics_host, scanner.metrics_port, health)
    # Starting, until the scan loop polls (the control log is read first).
    health.part("scanner", blocking_s=2 * kafka.request_timeout_s)
    identity = load_or_create(scanner.sensor_dir)
    log.info("sensor %s, key fingerprint %s", identity.sensor_id, identity.fingerprint)
    lifecycle_view = ControlView(kafka)
    lifecycle = ConnectionService(kafka, scanner, identity, lifecycle_view, health)
    lifecycle_thread = threading.Thread(
        target=lifecycle.run, args=(stop,), name="kata-lifecycle", daemon=True
    )
    lifecycle_thread.start()
    scans_view = ControlView(kafka)
    try:
        while not stop.is_set():
            # A new service rebuilds what it knows from the log, as after a restart.
            scans = ScanService(kafka, scanner, identity, scans_view, lifecycle, health)
            try:
                while not stop.is_set():
                    scans_view.pump(0)
                    scans.step()
            except KAFKA_TROUBLE as exc:
                log.warning("scanner stopped (%s); restarting in 2 s", exc)
                stop.wait(2)
            finally:
                scans.close()
    finally:
        scans_view.close()
        lifecycle_thread.join(timeout=30)
        lifecycle_view.close()
        if metrics is not None:
            metrics.close()
