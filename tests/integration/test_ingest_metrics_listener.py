"""Ingest's metrics listener on a real socket: SMTP configured on every interface, metrics stay
on 127.0.0.1 (their own setting, metrics_host), unreachable at the machine's other address."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from tests.integration.test_ingest_harness import IngestProcess

pytestmark = pytest.mark.kafka


# Every 127/8 address is this machine's on Linux: 127.0.0.2 stands for "an address other than
# metrics' own", on any machine, with or without a network.
OTHER_ADDRESS = "127.0.0.2"


def test_smtp_on_every_interface_keeps_metrics_on_loopback(make_kafka_settings, tmp_path):
    # Given ingest's SMTP listener on every interface and metrics asked for, host unset
    with IngestProcess(make_kafka_settings(), tmp_path / "ingest.log",
                       host="0.0.0.0", metrics_port=0) as ingest:  # noqa: S104
        # Then SMTP answers on another of the machine's addresses
        with socket.create_connection((OTHER_ADDRESS, ingest.address[1]), timeout=10) as smtp:
            assert smtp.recv(1024).startswith(b"220 ")
        # And metrics listen on loopback only
        host, port = ingest.listening["ingest-metrics"]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            assert b"katagate_ingest_data_budget_bytes" in page.read()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((OTHER_ADDRESS, port), timeout=10).close()
        # And the same listener says ingest lives and is ready: its SMTP event loop and its
        # writer beat, the listener is bound, the writer's producer started
        for probe in ("healthz", "readyz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{probe}", timeout=10) as page:
                body = json.loads(page.read())
            assert body["status"] == "ok", body
            assert set(body["checks"]) == {"smtp", "ingest-writer-0"}
        assert body["checks"]["smtp"]["state"] == "listening"
