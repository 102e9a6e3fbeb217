"""Ingest's metrics listener on a real socket: SMTP configured on every interface, metrics stay
on 127.0.0.1 (their own setting, metrics_host), unreachable at the machine's other address."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from tests.integration.test_ingest_harness import IngestProcess

pytestmark = pytest.mark.kafka


def outward_address() -> str | None:
    """This machine's address on its route out, if it has one other than loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # no packet is sent: it picks the route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_smtp_on_every_interface_keeps_metrics_on_loopback(make_kafka_settings, tmp_path):
    outward = outward_address()
    if outward is None:
        pytest.skip("no address but loopback here")
    # Given ingest's SMTP listener on every interface and metrics asked for, host unset
    with IngestProcess(make_kafka_settings(), tmp_path / "ingest.log",
                       host="0.0.0.0", metrics_port=0) as ingest:  # noqa: S104
        # Then SMTP answers on the outward address
        with socket.create_connection((outward, ingest.address[1]), timeout=10) as smtp:
            assert smtp.recv(1024).startswith(b"220 ")
        # And metrics listen on loopback only
        host, port = ingest.listening["ingest-metrics"]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            assert b"katagate_ingest_data_budget_bytes" in page.read()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((outward, port), timeout=10).close()
