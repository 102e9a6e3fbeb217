"""The administrator's Backup and delivery-queue actions through the whole gateway: a real SMTP
client, the real broker, the KATA emulator, a real next hop. An EICAR message deleted by the
default rule is retained in the Backup and, resent to an address the administrator gives,
arrives marked as released; a message the next hop defers is retried now by a queue action
and delivered, another deleted from the queue, a third returned to its sender."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from demo_sink.server import Faults, SinkServer
from schemas import (
    BackupResendRequested,
    MessageReceived,
    ProducerRef,
    QueueActionRequested,
)
from tests.e2e.gateway import Gateway, dump
from tests.e2e.test_decision_table import EICAR, mail
from tests.integration.kata_harness import publish, wait_for

pytestmark = pytest.mark.kafka
ADMIN = ProducerRef(stage="admin", instance="test")


@pytest.fixture(scope="module")
def next_hop(tmp_path_factory):
    with SinkServer(tmp_path_factory.mktemp("next-hop")) as sink:
        yield sink


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, kafka_bootstrap, next_hop):
    from tests.conftest import ensure_namespace

    # No rules: the default rule (Delete, Backup copy). The retry timer is far off, so only an
    # administrator's action attempts a deferred message again during the test.
    gateway = Gateway(ensure_namespace(kafka_bootstrap), tmp_path_factory.mktemp("gw"),
                      decider={"next_hop_port": next_hop.port, "retry_first_s": 600})
    yield gateway
    gateway.close()


def request(gateway, event) -> None:
    publish(gateway.kafka, gateway.names.mail, [event])


def of_type(gateway, message_id: str, kind: str) -> list:
    return [e for e in gateway.mail_events(message_id) if e.type == kind]


def test_an_eicar_copy_in_the_backup_is_resent_marked_to_an_address_given(gateway, next_hop):
    # Given an EICAR message deleted by the default rule
    m = gateway.send(mail(b"eicar for backup", EICAR), sender="mallory@example.org")
    events = gateway.wait_terminal(m)
    assert "message.discarded" in [e.type for e in events], dump(events)
    # Then the Backup ledger retained its copy
    (kept,) = wait_for(lambda: of_type(gateway, m, "backup.retained"), 30, "backup.retained")
    received = next(e for e in events if isinstance(e, MessageReceived))
    assert (kept.size, kept.copies_in_use) == (received.size, 1)
    # When an administrator resends it to an address they give
    asked = BackupResendRequested(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), producer=ADMIN, message_id=m,
        correlation_id=received.correlation_id, actor="console:alice",
        envelope_from=received.envelope_from, recipients=["carol@example.net"],
        to_original=False, location=kept.location, sha256=kept.sha256)
    request(gateway, asked)
    # Then it is delivered, recorded as caused by the request
    (resent,) = wait_for(lambda: of_type(gateway, m, "backup.resent"), 30, "backup.resent")
    assert (resent.outcome, resent.causation_id, resent.recipients) == (
        "delivered", asked.event_id, ["carol@example.net"])
    # And it arrives with the release mark in front of the original bytes
    (arrived,) = [s for s in _messages(next_hop)
                  if s.recipients == ["carol@example.net"]]
    header, original = arrived.data.split(b"\r\n", 1)
    assert header.startswith(
        f"X-Katagate-Released-From-Backup: {m}; by=console:alice; at=".encode())
    assert EICAR in original
    assert arrived.envelope_from == "mallory@example.org"


def test_deferred_messages_are_retried_now_deleted_or_returned_to_their_sender(
        gateway, next_hop):
    # Given a next hop that answers 451 to every message, and three messages deferred
    next_hop.handler.faults = Faults(fail_rate=1.0)
    first = gateway.send(mail(b"queued one", b"first body"))
    second = gateway.send(mail(b"queued two", b"second body"))
    third = gateway.send(mail(b"queued three", b"third body"), sender="dave@example.org")
    for m in (first, second, third):
        wait_for(lambda m=m: of_type(gateway, m, "delivery.deferred"), 30, "a deferral")
    # When the next hop is back and an administrator retries the first now, deletes the
    # second and returns the third to its sender
    next_hop.handler.faults = Faults()
    retry, delete, bounce = (QueueActionRequested(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), producer=ADMIN, message_id=m,
        action=action, actor="cli:root")
        for m, action in ((first, "retry"), (second, "delete"), (third, "bounce")))
    request(gateway, retry)
    request(gateway, delete)
    request(gateway, bounce)
    # Then the first is delivered at its second attempt, caused by the request
    events = gateway.wait_terminal(first, 30)
    (delivered,) = [e for e in events if e.type == "delivery.delivered"]
    assert (delivered.attempts, delivered.causation_id) == (2, retry.event_id), dump(events)
    assert [s for s in _messages(next_hop) if b"first body" in s.data]
    # And the second is discarded as deleted by the administrator, never delivered
    events = gateway.wait_terminal(second, 30)
    (discarded,) = [e for e in events if e.type == "message.discarded"]
    assert (discarded.reason, discarded.causation_id) == ("deleted_by_admin", delete.event_id)
    assert not [s for s in _messages(next_hop) if b"second body" in s.data]
    # And the third failed for good naming the administrator, its sender told by a DSN
    events = wait_for(lambda: (found := gateway.mail_events(third)) and any(
        e.type == "ndr.sent" for e in found) and found, 30, "the DSN recorded")
    (failed,) = [e for e in events if e.type == "delivery.failed"]
    assert "cli:root" in failed.reply
    assert failed.causation_id == bounce.event_id
    (dsn,) = [s for s in _messages(next_hop) if s.recipients == ["dave@example.org"]]
    assert dsn.envelope_from == ""
    assert not [s for s in _messages(next_hop) if s.recipients == ["bob@example.net"]
                and b"third body" in s.data]


def _messages(sink):
    from demo_sink.store import read_messages

    return read_messages(sink.directory)
