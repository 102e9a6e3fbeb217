"""Pairing with a Central Node over real TLS sockets, as the product documentation describes:
the gateway connects, waits for confirmation, the KATA administrator compares fingerprints and
accepts (or rejects) it; a swapped Central Node key and an unreachable node are told apart."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from katagate.eventlog.topics import TopicNames
from katagate.schemas import CentralNodeObserved, SensorKeyGenerated, decode_event
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import (
    Emulator,
    Lifecycle,
    PlainHttps,
    configure_kata,
    openssl_fingerprint,
    wait_for,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def emulator(tmp_path):
    emulator = Emulator(tmp_path / "kata").start()
    yield emulator
    emulator.stop()


def paired(gateway, emulator) -> str:
    """Accepted by the KATA administrator and connected; the Central Node key now pinned."""
    gateway.wait_state("awaiting_confirmation")
    emulator.cli("sensors", "accept", gateway.identity.sensor_id)
    gateway.wait_state("connected")
    return gateway.control.view.effective_pin


def control_events(settings):
    topic = TopicNames(settings.topic_prefix).control
    return [decode_event(r.value) for r in read_all(settings, topic)]


def test_pairing_accepted_after_comparing_fingerprints(kafka_settings, emulator, tmp_path):
    configure_kata(kafka_settings, emulator.port)
    with Lifecycle(kafka_settings, tmp_path / "gateway") as gateway:
        gateway.wait_state("awaiting_confirmation")

        # The KATA administrator's list: our sensor, unconfirmed (marked with an asterisk).
        (sensor,) = emulator.sensors()
        assert sensor["sensorId"] == gateway.identity.sensor_id
        assert sensor["status"] == "pending"
        listing = emulator.cli("sensors", "list").stdout
        line = next(x for x in listing.splitlines() if gateway.identity.sensor_id in x)
        assert line.startswith("*")

        # Both fingerprints agree three ways: emulator, gateway state, openssl on the files.
        ours = openssl_fingerprint(gateway.identity.cert_path)
        theirs = openssl_fingerprint(emulator.key_file)
        assert sensor["fingerprint"] == gateway.identity.fingerprint == ours
        assert gateway.control.view.sensor_fingerprint == ours
        wait_for(lambda: gateway.control.view.observed == theirs, what="the KATA key shown")
        assert emulator.fingerprint == theirs
        assert gateway.control.view.effective_pin is None  # pinned only once connected

        emulator.cli("sensors", "accept", gateway.identity.sensor_id)
        gateway.wait_state("connected")
        assert gateway.control.view.effective_pin == theirs
        listing = emulator.cli("sensors", "list").stdout
        line = next(x for x in listing.splitlines() if gateway.identity.sensor_id in x)
        assert not line.startswith("*")

    events = control_events(kafka_settings)
    keys = [e for e in events if isinstance(e, SensorKeyGenerated)]
    assert [k.fingerprint for k in keys] == [ours]
    assert "PRIVATE" not in keys[0].certificate_pem
    pins = [e for e in events if isinstance(e, CentralNodeObserved) and e.pinned]
    assert [p.fingerprint for p in pins] == [theirs]
    states = [e.state for e in events if e.type == "connection.state_changed"]
    assert states == ["connecting", "awaiting_confirmation", "connected"]


def test_pairing_rejected_by_kata(kafka_settings, emulator, tmp_path):
    configure_kata(kafka_settings, emulator.port)
    with Lifecycle(kafka_settings, tmp_path / "gateway") as gateway:
        gateway.wait_state("awaiting_confirmation")
        emulator.cli("sensors", "reject", gateway.identity.sensor_id)
        gateway.wait_state("rejected")


def test_a_swapped_central_node_key_is_a_certificate_mismatch(kafka_settings, emulator, tmp_path):
    configure_kata(kafka_settings, emulator.port)
    with Lifecycle(kafka_settings, tmp_path / "gateway") as gateway:
        pinned = paired(gateway, emulator)

        emulator.cli("rotate-key")
        new_key = openssl_fingerprint(emulator.key_file)
        assert new_key != pinned
        gateway.service.request_check()
        gateway.wait_state("certificate_mismatch")
        assert gateway.control.view.effective_pin == pinned  # the pin does not follow the node
        assert gateway.control.view.observed == new_key


def test_unreachable_then_connected_again_when_the_node_returns(kafka_settings, emulator,
                                                                 tmp_path):
    configure_kata(kafka_settings, emulator.port)
    with Lifecycle(kafka_settings, tmp_path / "gateway") as gateway:
        gateway.wait_state("awaiting_confirmation")
        emulator.cli("sensors", "accept", gateway.identity.sensor_id)
        gateway.wait_state("connected")

        emulator.stop()
        gateway.service.request_check()
        gateway.wait_state("unreachable")
        emulator.start()  # same port, same state folder, same key
        gateway.wait_state("connected", timeout_s=60)


def test_no_address_means_not_configured_and_nothing_is_contacted(kafka_settings, tmp_path):
    with Lifecycle(kafka_settings, tmp_path / "gateway") as gateway:
        wait_for(lambda: any(e.type == "connection.state_changed"
                             for e in control_events(kafka_settings)), what="a state event")
        assert gateway.state() == "not_configured"


def test_one_lifecycle_owner_at_a_time_and_another_takes_over(kafka_settings, emulator,
                                                               tmp_path):
    configure_kata(kafka_settings, emulator.port)
    a = Lifecycle(kafka_settings, tmp_path / "gw", instance="scanner-a").__enter__()
    b = None
    try:
        a.wait_state("awaiting_confirmation")  # alone, a owns the lifecycle
        b = Lifecycle(kafka_settings, tmp_path / "gw", instance="scanner-b").__enter__()
        b.wait_state("awaiting_confirmation")  # b sees the state a recorded
        writers = {e.producer.instance for e in control_events(kafka_settings)
                   if e.producer.stage == "scanner"}
        assert writers == {"scanner-a"}
    finally:
        a.__exit__()  # the owner leaves; its partition moves to b
    try:
        emulator.cli("sensors", "accept", b.identity.sensor_id)
        b.wait_state("connected", timeout_s=60)
    finally:
        b.__exit__()
    connected = [e for e in control_events(kafka_settings)
                 if e.type == "connection.state_changed" and e.state == "connected"]
    assert [e.producer.instance for e in connected] == ["scanner-b"]


def test_an_expired_central_node_certificate_keeps_the_pinned_key_and_is_reported(
        kafka_settings, emulator, tmp_path, caplog):
    from katagate.scanner.metrics import CENTRAL_NODE_CERT_NOT_AFTER

    configure_kata(kafka_settings, emulator.port)
    with Lifecycle(kafka_settings, tmp_path / "gateway") as gateway:
        pinned = paired(gateway, emulator)
        assert CENTRAL_NODE_CERT_NOT_AFTER._value.get() > time.time() + 86400

        out = emulator.cli("expire-cert").stdout
        assert "key unchanged" in out
        assert openssl_fingerprint(emulator.key_file) == pinned
        # The key is what the KATA administrator and ours compared: still trusted, so the
        # gateway stays connected (mail is still scanned), and says the certificate expired.
        gateway.service.request_check()
        wait_for(lambda: CENTRAL_NODE_CERT_NOT_AFTER._value.get() < time.time(),
                 what="the expiry seen on a new connection")
        gateway.service.request_check()
        time.sleep(1.0)
        assert gateway.state() == "connected"
        assert gateway.control.view.effective_pin == pinned
        # The state window has the expiry too, from the log.
        expired = gateway.control.view.observed_not_after
        assert expired is not None
        assert expired.timestamp() == CENTRAL_NODE_CERT_NOT_AFTER._value.get()
        warnings = [r.getMessage() for r in caplog.records
                    if "certificate expired" in r.getMessage()]
        assert len(warnings) == 1, warnings  # once, though every check opens a connection
        assert pinned in warnings[0]


def test_an_https_server_answering_404_is_never_pinned(kafka_settings, tmp_path):
    """Given a plain HTTPS server (no KATA) at the configured address, When the gateway checks
    it, Then it is an Error naming why, its key is shown but not pinned, and no message could go
    there (no pin, no Connected)."""
    with PlainHttps(tmp_path / "plain") as plain:
        configure_kata(kafka_settings, plain.port)
        with Lifecycle(kafka_settings, tmp_path / "gateway") as gateway:
            gateway.wait_state("error")
            wait_for(lambda: len(plain.requests) >= 3, what="checks after the first")
            view = gateway.control.view
            assert view.observed == plain.fingerprint
            assert view.effective_pin is None
            assert "not as a KATA scanner API answers" in view.detail
            assert all(r.startswith("GET ") and "/detects?" in r for r in plain.requests)
    events = control_events(kafka_settings)
    assert not [e for e in events if isinstance(e, CentralNodeObserved) and e.pinned]
    states = [e.state for e in events if e.type == "connection.state_changed"]
    assert "connected" not in states


def test_with_require_manual_pin_the_gateway_never_pins_and_waits_for_an_administrator(
        kafka_settings, emulator, tmp_path):
    from katagate.admin.central_node import pin_key
    from tests.integration.kata_harness import publish

    configure_kata(kafka_settings, emulator.port)
    with Lifecycle(kafka_settings, tmp_path / "gateway", require_manual_pin=True) as gateway:
        # Given the sensor accepted by the KATA administrator
        gateway.wait_state("awaiting_confirmation")
        emulator.cli("sensors", "accept", gateway.identity.sensor_id)
        # Then the gateway stays Connecting, showing the key an administrator must confirm
        wait_for(lambda: gateway.control.view.pin_required, what="the pin left to a person")
        view = gateway.control.view
        assert (view.state, view.observed, view.effective_pin) == (
            "connecting", emulator.fingerprint, None)
        assert emulator.fingerprint in view.detail
        time.sleep(1.5)  # several quick re-checks later: still nothing pinned
        assert (gateway.state(), gateway.control.view.effective_pin) == ("connecting", None)
        # When the administrator pins the fingerprint shown (what `katagate kata pin` writes)
        publish(kafka_settings, TopicNames(kafka_settings.topic_prefix).control, [
            pin_key(view.target, view.observed or "", "bob", datetime.now(UTC))])
        # Then the next check connects with that key
        gateway.wait_state("connected")
        assert gateway.control.view.effective_pin == emulator.fingerprint
        assert not gateway.control.view.pin_required
    pins = [e for e in control_events(kafka_settings)
            if isinstance(e, CentralNodeObserved) and e.pinned]
    assert [(p.producer.stage, p.fingerprint) for p in pins] == [("admin", emulator.fingerprint)]
