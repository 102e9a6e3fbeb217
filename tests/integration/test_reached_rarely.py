"""Given the real broker: a client that says HELO (not EHLO) sends mail; the admission's ledger
is read again from the log after an aborted batch, so the message is admitted once when it is
read again; and a console change that lost a race with another administrator is a 409."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

import console.api
from katagate.admin.control_writer import ControlSession
from katagate.decider.admission import Admission, new_control_view
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    KataSettingsChanged,
    MessageReceived,
    ProducerRef,
    QuarantineAdmitted,
    decode_event,
)
from tests.console_client import console_client, sign_in
from tests.integration.kafka_read import control_events, read_all
from tests.integration.kata_harness import publish
from tests.integration.test_ingest_harness import Ingest, RawClient, raw_of, received
from tests.integration.test_projector_live import publish_routed
from tests.trace_field import without_trace
from tests.unit.test_projector_flows import control_flow, message_flow

pytestmark = pytest.mark.kafka
DECIDER = PRINCIPALS["decider"]


# --- ingest/handler.py: handle_HELO -----------------------------------------------------------


def test_a_client_that_says_helo_not_ehlo_can_send_mail(kafka_settings):
    data = b"From: alice@example.org\r\nSubject: old client\r\n\r\nHello\r\n"
    with Ingest(kafka_settings) as ingest:
        client = RawClient(ingest.address)
        try:
            # A bad HELO name is refused, and mail needs a good one first
            assert client.cmd("HELO bad name") == "501 5.5.4 Invalid HELO/EHLO argument"
            assert client.cmd("MAIL FROM:<alice@example.org>").startswith("503 ")
            # When the client greets with HELO: one line, no extensions
            # (RFC 2034 section 3 exempts HELO and EHLO replies from enhanced status codes)
            assert client.cmd("HELO old-client.test") == "250 mx.test"
            assert client.cmd("MAIL FROM:<alice@example.org>").startswith("250")
            assert client.cmd("RCPT TO:<bob@example.net>").startswith("250")
            assert client.cmd("DATA").startswith("354")
            reply = client.cmd(data + b".")
            assert client.cmd("QUIT").startswith("221")
        finally:
            client.sock.close()
    # Then the message is accepted and committed, its HELO name recorded
    assert reply.startswith("250 2.0.0 Ok: queued as ")
    [event] = received(kafka_settings)
    assert reply.endswith(event.message_id)
    assert event.helo == "old-client.test"
    assert (event.envelope_from, event.envelope_to) == ("alice@example.org", ["bob@example.net"])
    stored = raw_of(kafka_settings, event)
    assert without_trace(stored) == data
    assert f" with SMTP id {event.message_id}".encode() in stored  # HELO: not ESMTP (RFC 3848)


# --- decider/admission.py: Admission.aborted --------------------------------------------------


def received_event(i: int) -> MessageReceived:
    [(topic, event)] = [(t, e) for t, e in message_flow(i, "clean") if e.type == "mail.received"]
    assert topic == "mail"
    assert isinstance(event, MessageReceived)
    return event.model_copy(update={"settings_version": 2})


def admitted_ids(kafka: KafkaSettings) -> list[str]:
    events = [decode_event(r.value or b"")
              for r in read_all(kafka, TopicNames(kafka.topic_prefix).quarantine)]
    assert all(isinstance(e, QuarantineAdmitted) for e in events)
    return [e.message_id for e in events if isinstance(e, QuarantineAdmitted)]


def test_after_an_aborted_batch_the_ledger_is_read_again_and_the_message_admitted_once(
        kafka_settings):
    names = TopicNames(kafka_settings.topic_prefix)
    # Given KATA protection on and connected (control versions 1 and 2), and one message
    publish_routed(kafka_settings, control_flow())
    publish(kafka_settings, names.mail, [received_event(0)])
    control = new_control_view(kafka_settings)
    assert control.wait_caught_up(30)
    assert control.value.current.connection == "connected"
    failing = {"next": False}
    seen_before_commit: list[set[str]] = []
    admission = Admission(kafka_settings, control, ProducerRef(stage="decider", instance="t"),
                          lambda: datetime.now(UTC))

    def before_commit() -> None:
        seen_before_commit.append(set(admission.ledger.held))
        if failing["next"]:
            failing["next"] = False
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "the test's broker hiccup",
                                            txn_requires_abort=True))

    # Wired as run_admission wires it: the fencing producer first, then the ledger's fold
    loop = TransactionalLoop(
        kafka_settings, stage="admission",
        group_id=DECIDER.group(kafka_settings.topic_prefix, "admission-offsets"),
        producer=TransactionalProducer(
            kafka_settings, DECIDER.transactional_id(kafka_settings.topic_prefix, "admission")),
        topics=[names.mail], handler=admission, dead_letter_topic=names.deadletter,
        manual_assignment=True, before_commit=before_commit)
    try:
        def run_until_batch(count: int) -> int:
            for _ in range(200):
                if len(seen_before_commit) >= count:
                    break
                loop.run_once()
            assert len(seen_before_commit) >= count, "the loop read no batch"
            return len(seen_before_commit)

        # When the first message is admitted and committed
        run_until_batch(1)
        assert set(admission.ledger.held) == {"MSG00000000"}
        assert admitted_ids(kafka_settings) == ["MSG00000000"]

        # And the batch admitting a second one aborts
        publish(kafka_settings, names.mail, [received_event(1)])
        failing["next"] = True
        batch = run_until_batch(2)
        # Then the ledger held it eagerly while the batch was open ...
        assert seen_before_commit[batch - 1] == {"MSG00000000", "MSG00000001"}
        # ... and, the batch aborted, holds what the log holds: the first message only
        assert set(admission.ledger.held) == {"MSG00000000"}
        assert admission.ledger.messages_in_use == 1
        assert admitted_ids(kafka_settings) == ["MSG00000000"]

        # When the message is read again, Then it is admitted, exactly once
        run_until_batch(3)
        assert set(admission.ledger.held) == {"MSG00000000", "MSG00000001"}
        assert admitted_ids(kafka_settings) == ["MSG00000000", "MSG00000001"]
        assert admission.ledger.bytes_in_use == sum(
            received_event(i).size for i in (0, 1))
    finally:
        loop.close()
        control.close()


# --- console/app.py: _kafka, a lost race ------------------------------------------------------


def test_a_console_change_that_lost_a_race_is_409_and_writes_nothing(
        kafka_settings, tmp_path, monkeypatch):
    real = console.api.change_settings

    def raced(state: Any, changes: Any, **ctx: Any) -> Any:
        # Another administrator's command runs to completion while this one decides
        with ControlSession(kafka_settings) as fast:
            fast.append([real(fast.state, {"central_node_port": 8443}, actor="fast",
                              now=datetime.now(UTC), event_id=uuid.uuid4())])
        return real(state, changes, **ctx)

    monkeypatch.setattr(console.api, "change_settings", raced)
    with console_client(tmp_path / "console", kafka_settings) as (client, _console, _clock):
        csrf = sign_in(client)
        answer = client.put("/api/settings", json={"central_node_port": 9443},
                            headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 409
        assert answer.json() == {
            "error": "another administrator changed the configuration while this command "
                     "ran; nothing was written: run it again", "field": None, "allowed": None}
        # The log holds the winner's change alone
        [written] = control_events(kafka_settings)
        assert isinstance(written, KataSettingsChanged)
        assert (written.actor, written.version, written.settings.central_node_port) == (
            "fast", 1, 8443)
        monkeypatch.setattr(console.api, "change_settings", real)
        shown = client.get("/api/settings").json()
        assert (shown["version"], shown["settings"]["central_node_port"]) == (1, 8443)
