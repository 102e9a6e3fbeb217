"""What happens when KATA cannot answer, through the whole gateway (real broker, emulator, sink,
SMTP client): per rule, `skip` delivers unscanned at once, `tempfail` answers 451 4.7.0 and
accepts nothing, `hold` keeps the message until KATA can scan it. With the emulator down (not
connected), then with the quarantine full (one place, taken).

The product's shortest response timeout is a minute: the decider's clock is moved past it, as
tests/e2e/test_quarantine.py does."""

from __future__ import annotations

import smtplib
import threading
from datetime import UTC, datetime, timedelta

import pytest

from katagate.admin.quarantine import forced_release
from katagate.eventlog.settings import KafkaSettings
from katagate.schemas import Event, Rule
from tests.conftest import ensure_namespace
from tests.e2e.gateway import Gateway
from tests.integration.kata_harness import publish, wait_for

pytestmark = pytest.mark.kafka

CLEAN = b"Subject: quarterly figures\r\n\r\nNothing to see here.\r\n"


def rule(rule_id: str, on_unavailable: str, position: int) -> Rule:
    return Rule.model_validate({
        "rule_id": rule_id, "name": rule_id, "position": position,
        "recipients": [f"{rule_id}@example.net"],
        "kata": {"on_unavailable": on_unavailable}})


def refused_at_rcpt(gateway: Gateway, recipient: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        code, reply = client.rcpt(recipient)
        client.rset()
    return code, reply


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def decided(events: list[Event]) -> Event:
    return next(e for e in events if e.type == "action.decided")


def state_is(gateway: Gateway, wanted: str) -> bool:
    states = gateway.connection_states()
    return bool(states) and states[-1] == wanted


@pytest.fixture
def namespace(kafka_bootstrap) -> KafkaSettings:
    return ensure_namespace(kafka_bootstrap)


def test_skip_delivers_tempfail_refuses_and_hold_keeps_mail_until_kata_can_scan_it(
        namespace, tmp_path):
    # Given one place in the quarantine, the global skip, and a rule each for tempfail and hold
    gateway = Gateway(namespace, tmp_path, kata={"quarantine_max_messages": 1},
                      rules=[rule("tempfail", "tempfail", 0), rule("hold", "hold", 1)])
    try:
        # Verdicts wait until the test finishes the scans.
        gateway.emulator.cli("faults", "set", "--latency", "600")
        # When KATA goes away
        gateway.emulator.stop()
        wait_for(lambda: state_is(gateway, "unreachable"), 30, "the connection lost")

        # Then a recipient under the tempfail rule gets 451 4.7.0 at RCPT, and nothing is taken
        code, reply = refused_at_rcpt(gateway, "tempfail@example.net")
        assert (code, reply) == (451, b"4.7.0 KATA not connected: not accepted unscanned, "
                                      b"try again later")
        # And mail under the global skip is delivered unscanned at once, Skipped
        skipped = gateway.send(CLEAN, recipients=("bob@example.net",))
        events = gateway.wait_terminal(skipped, timeout_s=30)
        assert (decided(events).action, decided(events).skipped, decided(events).reason,
                decided(events).held) == ("deliver", True, "not_connected", False)
        assert "delivery.delivered" in types(events)
        # And mail under the hold rule is kept: admitted although not connected (its place
        # counts), not delivered
        held = gateway.send(CLEAN, recipients=("hold@example.net",))
        wait_for(lambda: "quarantine.admitted" in types(gateway.mail_events(held)), 30,
                 "the held message admitted")
        # And, the one place taken, the next waits outside the quarantine
        # (content of its own: an identical one would take the first's verdict from the
        # verdict cache, with no submission of its own)
        waiting = gateway.send(CLEAN + b"second\r\n", recipients=("hold@example.net",))
        wait_for(lambda: "quarantine.held" in types(gateway.mail_events(waiting)), 30,
                 "the second held message waiting")
        (on_hold,) = [e for e in gateway.mail_events(waiting) if e.type == "quarantine.held"]
        assert (on_hold.reason, on_hold.waiting, on_hold.messages_in_use) == (
            "count_limit", 1, 1)

        # When KATA comes back
        gateway.emulator.start()
        wait_for(lambda: state_is(gateway, "connected"), 60, "connected again")
        # Then the kept message is submitted, the one still waiting is not
        wait_for(lambda: "scan.submitted" in types(gateway.mail_events(held)), 30,
                 "the held message submitted")
        assert "scan.submitted" not in types(gateway.mail_events(waiting))
        # And while the quarantine is full, the tempfail rule's recipient gets 451 "full"
        code, reply = refused_at_rcpt(gateway, "tempfail@example.net")
        assert (code, reply) == (451, b"4.7.0 KATA Quarantine full: not accepted unscanned, "
                                      b"try again later")

        # When an administrator sends on a third one waiting behind the second
        third = gateway.send(CLEAN, recipients=("hold@example.net",))
        wait_for(lambda: "quarantine.held" in types(gateway.mail_events(third)), 30,
                 "the third held message waiting")
        publish(gateway.kafka, gateway.names.mail,
                [forced_release(third, "admin", "cannot wait", datetime.now(UTC))])
        # Then it leaves the waiting list, is delivered unscanned, and frees no place
        events = gateway.wait_terminal(third, timeout_s=30)
        assert [t for t in types(events) if t.startswith("quarantine.")] == [
            "quarantine.held", "quarantine.forced_release", "quarantine.hold_ended"]
        ended = next(e for e in events if e.type == "quarantine.hold_ended")
        assert (ended.cause, ended.messages_in_use, ended.waiting) == ("forced_release", 1, 1)
        assert (decided(events).reason, decided(events).skipped) == ("forced_release", True)

        # When the first one's verdict comes
        gateway.emulator.cli("scans", "finish")
        # Then it is delivered as scanned, and the waiting one goes in, is scanned, delivered
        events = gateway.wait_terminal(held, timeout_s=60)
        assert (decided(events).reason, decided(events).skipped) == ("not_detected", False)
        wait_for(lambda: "scan.submitted" in types(gateway.mail_events(waiting)), 30,
                 "the waiting message admitted and submitted")
        gateway.emulator.cli("scans", "finish")
        gateway.wait_terminal(waiting, timeout_s=60)
        # The release follows the delivery, in admission's own transaction.
        wait_for(lambda: "quarantine.released" in types(gateway.mail_events(waiting)), 30,
                 "the waiting message released")
        events = gateway.mail_events(waiting)
        lifecycle = [t for t in types(events) if t.startswith("quarantine.")]
        assert lifecycle == ["quarantine.held", "quarantine.admitted", "quarantine.released"]
        assert (decided(events).reason, decided(events).held) == ("not_detected", False)
        assert sorted(s.recipients for s in gateway.sink.messages()) == [
            ["bob@example.net"], ["hold@example.net"], ["hold@example.net"],
            ["hold@example.net"]]
        # And no message was ever accepted for the refused recipient
        assert not [e for e in gateway.mail_events() if e.type == "mail.received"
                    and "tempfail@example.net" in e.envelope_to]
    finally:
        gateway.close()


def test_hold_with_reject_returns_mail_kata_never_answered_for_as_not_scanned(namespace,
                                                                             tmp_path):
    offset = [timedelta(0)]
    lock = threading.Lock()

    def clock() -> datetime:
        with lock:
            return datetime.now(UTC) + offset[0]

    # Given hold for all mail, hold_outcome reject, and KATA that takes its time
    gateway = Gateway(namespace, tmp_path, clock=clock,
                      kata={"on_unavailable": "hold", "hold_outcome": "reject",
                            "response_timeout_s": 60})
    try:
        gateway.emulator.cli("faults", "set", "--latency", "600")
        m = gateway.send(CLEAN)
        wait_for(lambda: "scan.submitted" in types(gateway.mail_events(m)), 30,
                 "the submission")
        # When the response timeout passes without a verdict
        with lock:
            offset[0] = timedelta(seconds=61)
        events = gateway.wait_terminal(m, timeout_s=30)
        # Then hold_outcome rejects it, held, and the NDR says it was not scanned
        assert (decided(events).action, decided(events).reason, decided(events).held,
                decided(events).skipped) == ("reject", "timeout", True, False)
        assert [e.reason for e in events if e.type == "ndr.sent"] == ["kata_reject"]
        (ndr,) = wait_for(lambda: [s for s in gateway.sink.messages()
                                   if s.recipients == ["alice@example.org"]], 30, "the NDR")
        assert b"could not be scanned" in ndr.data
        assert b"detected a threat" not in ndr.data
        assert b"KATA gave no verdict within the response timeout" in ndr.data
        assert not [s for s in gateway.sink.messages() if s.recipients == ["bob@example.net"]]
    finally:
        gateway.close()
