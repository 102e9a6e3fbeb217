"""The KATA quarantine through the whole gateway: both limits hold exactly under concurrency and
usage returns to zero; the response timeout and a forced release send mail on without a verdict,
an administrator's Delete discards a waiting message, and the verdict that comes later is
recorded as a late one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from katagate.decider.ledger import Ledger
from katagate.eventlog.settings import KafkaSettings
from katagate.schemas import decode_event
from tests.conftest import ensure_namespace
from tests.e2e.gateway import Gateway
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import publish, wait_for
from tests.integration.test_projector_live import running

pytestmark = pytest.mark.kafka


def body(i: int, size: int = 200) -> bytes:
    line = b"x" * 76 + b"\r\n"
    return f"Subject: load {i}\r\n\r\n".encode() + line * max(1, size // len(line))


def ledger_events(gateway):
    return [decode_event(r.value) for r in read_all(gateway.kafka,
                                                    gateway.names.quarantine)]


def assert_limits_held(gateway, max_messages: int, max_bytes: int) -> Ledger:
    ledger = Ledger()
    for event in ledger_events(gateway):
        ledger.evolve(event)
        assert ledger.messages_in_use <= max_messages
        assert ledger.bytes_in_use <= max_bytes
        if event.type == "quarantine.admitted":
            assert (event.messages_in_use, event.bytes_in_use) == (
                ledger.messages_in_use, ledger.bytes_in_use)
    return ledger


def drained(ledger: Ledger) -> Ledger | None:
    return ledger if ledger.messages_in_use == 0 else None


@pytest.fixture
def namespace(kafka_bootstrap) -> KafkaSettings:
    return ensure_namespace(kafka_bootstrap)


@pytest.fixture(scope="module")
def default_gateway(kafka_bootstrap, tmp_path_factory) -> Iterator[Gateway]:
    """A gateway with the default limits, shared by the tests that change no setting: each
    sets the emulator's latency it needs and follows its own messages (by id, or by a sender
    no other test uses)."""
    gateway = Gateway(ensure_namespace(kafka_bootstrap), tmp_path_factory.mktemp("gw"))
    yield gateway
    gateway.close()


def test_the_count_limit_holds_under_50_concurrent_senders_and_usage_returns_to_zero(
    namespace, tmp_path
):
    gateway = Gateway(namespace, tmp_path, kata={"quarantine_max_messages": 10})
    try:
        gateway.emulator.cli("faults", "set", "--latency", "3")
        with ThreadPoolExecutor(max_workers=50) as pool:
            ids = list(pool.map(lambda i: gateway.send(body(i)), range(50)))
        for m in ids:
            gateway.wait_terminal(m, timeout_s=120)
        denied = [e for e in gateway.mail_events() if e.type == "quarantine.denied"]
        assert denied, "50 at once into 10 places: some must have been refused"
        assert {e.reason for e in denied} == {"count_limit"}
        delivered = {e.message_id for e in gateway.mail_events()
                     if e.type == "delivery.delivered"}
        assert delivered == set(ids)
        ledger = wait_for(lambda: drained(assert_limits_held(gateway, 10, 1024 ** 3)), 60,
                          "usage back to zero")
        assert ledger.bytes_in_use == 0
    finally:
        gateway.close()


def test_the_size_limit_skips_what_does_not_fit(namespace, tmp_path):
    mib = 1024 * 1024
    gateway = Gateway(namespace, tmp_path, kata={"quarantine_max_bytes": mib})
    try:
        # Scans outlast the sending by far, so nothing is released while the three arrive.
        gateway.emulator.cli("faults", "set", "--latency", "15")
        big = [gateway.send(body(i, size=400_000)) for i in range(4)]

        def admission(m: str):
            return next((e for e in gateway.mail_events(m)
                         if e.type in ("quarantine.admitted", "quarantine.denied")), None)

        outcomes = [wait_for(lambda m=m: admission(m), 60, "its admission") for m in big]
        seen = [(e.type, getattr(e, "reason", None), e.limit_bytes, e.bytes_in_use)
                for e in outcomes]
        denied = [e for e in outcomes if e.type == "quarantine.denied"]
        # Two fit, the rest do not (unless a verdict freed room in between): never all four.
        assert denied, f"four of 400 KB into 1 MiB were all admitted: {seen}"
        assert all(e.limit_bytes == mib for e in outcomes), seen
        assert {e.reason for e in denied} == {"size_limit"}, seen
        for e in denied:
            decided = next(x for x in gateway.wait_terminal(e.message_id)
                           if x.type == "action.decided")
            assert (decided.skipped, decided.reason) == (True, "size_limit")
        ledger = wait_for(lambda: drained(assert_limits_held(gateway, 5000, mib)), 60,
                          "usage back to zero")
        assert ledger.bytes_in_use == 0
    finally:
        gateway.close()


def test_the_response_timeout_skips_and_the_late_verdict_is_recorded(namespace, tmp_path):
    offset = [timedelta(0)]
    lock = threading.Lock()

    def clock() -> datetime:
        with lock:
            return datetime.now(UTC) + offset[0]

    gateway = Gateway(namespace, tmp_path, kata={"response_timeout_s": 60}, clock=clock)
    try:
        gateway.emulator.cli("faults", "set", "--latency", "4")
        m = gateway.send(body(1))
        wait_for(lambda: any(e.type == "scan.submitted" for e in gateway.mail_events(m)),
                 what="the submission")
        with lock:
            offset[0] = timedelta(seconds=61)  # the response timeout passes
        events = gateway.wait_terminal(m)
        decided = next(e for e in events if e.type == "action.decided")
        assert (decided.action, decided.skipped, decided.reason) == ("deliver", True, "timeout")
        assert any(e.type == "scan.timed_out" for e in events)
        late = wait_for(lambda: [e for e in gateway.mail_events(m)
                                 if e.type == "scan.late_verdict"], 30, "the late verdict")
        assert late[0].after == "timeout"
        assert late[0].state == "not_detected"
    finally:
        gateway.close()


def test_a_forced_release_delivers_now_and_the_scan_goes_on(default_gateway):
    from katagate.admin.quarantine import forced_release

    gateway = default_gateway
    gateway.emulator.cli("faults", "set", "--latency", "5")
    m = gateway.send(body(7))
    wait_for(lambda: any(e.type == "scan.submitted" for e in gateway.mail_events(m)),
             what="the submission")
    publish(gateway.kafka, gateway.names.mail,
            [forced_release(m, "admin", "the CEO is waiting", datetime.now(UTC))])
    events = gateway.wait_terminal(m, timeout_s=30)
    decided = next(e for e in events if e.type == "action.decided")
    assert (decided.skipped, decided.reason) == (True, "forced_release")
    released = next(e for e in events if e.type == "quarantine.released")
    assert released.cause == "forced_release"
    late = wait_for(lambda: [e for e in gateway.mail_events(m)
                             if e.type == "scan.late_verdict"], 30, "the late verdict")
    assert late[0].after == "forced_release"


def test_an_administrator_lists_and_deletes_a_waiting_message_and_it_is_never_delivered(
        default_gateway, tmp_path):
    gateway = default_gateway
    namespace = gateway.kafka
    state = tmp_path / "projector"
    state.mkdir()
    with running(namespace, state) as live:
        assert live.address is not None
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": namespace.bootstrap_servers,
               "KATAGATE_TOPIC_PREFIX": namespace.topic_prefix,
               "KATAGATE_PROJECTOR_URL": f"http://127.0.0.1:{live.address[1]}",
               "KATAGATE_PROJECTOR_TOKEN_FILE": str(state / "test-read-token")}

        def katagate(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "katagate", *args], env=env,
                                  text=True, capture_output=True, timeout=60, check=False)

        def waiting(*filters: str) -> list[dict]:
            done = katagate("quarantine", "list", "--json", *filters)
            assert done.returncode == 0, done.stderr
            rows: list[dict] = json.loads(done.stdout)["messages"]
            return rows

        # Verdicts come after 30 s: the administrator acts before them.
        gateway.emulator.cli("faults", "set", "--latency", "30")
        m = gateway.send(body(8), sender="erin@partner.example.org")
        other = gateway.send(body(9), sender="frank@partner.example.org")
        # Given two messages waiting for their verdict, listed with their senders
        wait_for(lambda: len(waiting("--from", "*@partner.example.org")) == 2, 30,
                 "both messages in the quarantine list")
        listed = waiting("--from", "erin@partner.example.org")
        assert [(w["message_id"], w["envelope_from"]) for w in listed] == [
            (m, "erin@partner.example.org")]
        assert listed[0]["size"] > 0
        assert listed[0]["deadline_at"]
        shown = katagate("quarantine", "list", "--sort", "size")
        assert "erin@partner.example.org" in shown.stdout, shown.stderr
        # When an administrator deletes it with an id that is not waiting, nothing is done
        refused = katagate("quarantine", "delete", m, "not an id")
        assert refused.returncode == 2
        assert "message_ids" in refused.stderr
        refused = katagate("quarantine", "delete", m, "AAAAAAAA0009")
        assert refused.returncode == 2
        assert "not waiting in the KATA Quarantine: AAAAAAAA0009" in refused.stderr
        # When they delete both at once
        done = katagate("quarantine", "delete", m, other, "--comment", "phishing",
                        "--actor", "ops")
        assert done.returncode == 0, done.stderr
        # Then each is discarded without waiting, its slot freed, and the verdict is late
        for message in (m, other):
            events = gateway.wait_terminal(message, timeout_s=30)
            assert [e.type for e in events if e.type in ("message.discarded",
                                                         "delivery.delivered")] == [
                "message.discarded"]
        events = gateway.wait_terminal(m, timeout_s=30)
        decided = next(e for e in events if e.type == "action.decided")
        assert (decided.action, decided.reason, decided.backup) == (
            "delete", "deleted_by_admin", False)
        released = next(e for e in events if e.type == "quarantine.released")
        assert released.cause == "deleted_by_admin"
        discarded = next(e for e in events if e.type == "message.discarded")
        assert discarded.reason == "deleted_by_admin"
        wait_for(lambda: waiting("--from", "*@partner.example.org") == [], 30, "emptied")
        again = katagate("quarantine", "delete", m)
        assert again.returncode == 2
        assert "not waiting" in again.stderr
    late = wait_for(lambda: [e for e in gateway.mail_events(m)
                             if e.type == "scan.late_verdict"], 30, "the late verdict")
    assert late[0].after == "deleted_by_admin"
