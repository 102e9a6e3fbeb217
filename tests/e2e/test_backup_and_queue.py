"""The administrator's Backup and delivery-queue tools through the whole gateway: a real SMTP
client, the real broker, the KATA emulator, a real next hop, the real projector, and
`katagate messages|backup|queue` run as an administrator runs them (`python -m katagate`, its
own process). The full loop: an EICAR message deleted by the default rule is found in the Backup
by its sender, read, downloaded, resent to an address and arrives marked as released; deferred
messages are listed with their last reply, retried now, deleted from the queue or returned to
their sender. One gateway for the module."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from katagate.demo_sink.server import Faults, SinkServer
from katagate.schemas import ProducerRef, QueueActionRequested
from tests.e2e.gateway import Gateway, dump
from tests.e2e.test_decision_table import EICAR, mail
from tests.integration.kata_harness import ROOT, publish, wait_for
from tests.integration.test_projector_live import running

pytestmark = pytest.mark.kafka
ADMIN = ProducerRef(stage="admin", instance="test")


@pytest.fixture(scope="module")
def next_hop(tmp_path_factory):
    with SinkServer(tmp_path_factory.mktemp("next-hop")) as sink:
        yield sink


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, kafka_bootstrap, next_hop):
    from tests.conftest import ensure_namespace

    # The default rule (Delete, Backup copy); retries far off, so only the CLI retries.
    gateway = Gateway(ensure_namespace(kafka_bootstrap), tmp_path_factory.mktemp("gw"),
                      decider={"next_hop_port": next_hop.port, "retry_first_s": 600})
    yield gateway
    gateway.close()


@pytest.fixture(scope="module")
def katagate(gateway, tmp_path_factory):
    """`katagate ...` in its own process, reaching the projector by URL and token file only."""
    state = tmp_path_factory.mktemp("projector")
    with running(gateway.kafka, state) as live:
        assert live.address is not None
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": gateway.kafka.bootstrap_servers,
               "KATAGATE_TOPIC_PREFIX": gateway.kafka.topic_prefix,
               "KATAGATE_PROJECTOR_URL": f"http://127.0.0.1:{live.address[1]}",
               "KATAGATE_PROJECTOR_TOKEN_FILE": str(state / "test-read-token")}

        def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "katagate", *args], env=env,
                                  cwd=cwd, text=True, capture_output=True, timeout=60,
                                  check=False)
        yield run


def listed(katagate, *args: str) -> list[dict]:
    done = katagate(*args, "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict] = json.loads(done.stdout)["messages"]
    return rows


def test_an_eicar_copy_is_found_by_its_sender_read_downloaded_and_resent_marked(
        gateway, next_hop, katagate, tmp_path):
    # Given an EICAR message deleted by the default rule
    m = gateway.send(mail(b"eicar for the cli", EICAR), sender="mallory@example.org")
    events = gateway.wait_terminal(m)
    assert "message.discarded" in [e.type for e in events], dump(events)
    # When the administrator searches the Backup by its sender
    (row,) = wait_for(lambda: [r for r in listed(katagate, "backup", "list", "--from",
                                                 "mallory@example.org")
                               if r["message_id"] == m and r["backup"]], 30, "the copy listed")
    assert row["backup"]["state"] == "held"
    (tracked,) = listed(katagate, "messages", "search", "--from", "mallory@example.org",
                        "--verdict", "detected", "--action", "deleted")
    assert tracked["message_id"] == m
    # Then its headers and text are shown safely, and it downloads whole, 0600, once
    shown = katagate("backup", "show", m)
    assert shown.returncode == 0, shown.stderr
    assert "Subject: eicar for the cli" in shown.stdout
    assert "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" in shown.stdout
    out = tmp_path / "copy.eml"
    done = katagate("backup", "download", m, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == row["sha256"]
    assert out.stat().st_mode & 0o777 == 0o600
    assert katagate("backup", "download", m, "--out", str(out)).returncode == 2
    # When it is resent to an address given
    done = katagate("backup", "resend", m, "--to", "carol@example.net", "--comment", "FP")
    assert done.returncode == 0, done.stderr
    # Then it arrives at the next hop with the release mark naming the CLI's actor
    arrived = wait_for(lambda: [s for s in _messages(next_hop)
                                if s.recipients == ["carol@example.net"]], 30, "the resend")
    header = arrived[0].data.split(b"\r\n", 1)[0]
    assert header.startswith(f"X-Katagate-Released-From-Backup: {m}; by=cli:".encode())
    assert EICAR in arrived[0].data
    # When it is deleted, it leaves the Backup, and a second resend is refused
    done = katagate("backup", "delete", m, "--comment", "done")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: [r for r in listed(katagate, "backup", "list", "--state", "removed")
                      if r["message_id"] == m], 30, "the copy removed")
    again = katagate("backup", "resend", m)
    assert again.returncode == 2
    assert "is not held in the Backup" in again.stderr


def test_a_deferred_message_is_listed_with_its_last_reply_and_retried_now(
        gateway, next_hop, katagate):
    # Given a next hop answering 451, and a message deferred
    next_hop.handler.faults = Faults(fail_rate=1.0)
    m = gateway.send(mail(b"queued for the cli", b"queued body"))
    (row,) = wait_for(lambda: [r for r in listed(katagate, "queue", "list")
                               if r["message_id"] == m], 30, "the message in the queue")
    assert row["last_reply"].startswith("451")
    human = katagate("queue", "list")
    assert m in human.stdout
    # When the next hop is back and the administrator retries it now
    next_hop.handler.faults = Faults()
    done = katagate("queue", "retry", m, "--comment", "the next hop is back")
    assert done.returncode == 0, done.stderr
    # Then it is delivered, caused by the request; and it leaves the queue
    events = gateway.wait_terminal(m, 30)
    (asked,) = [e for e in events if e.type == "queue.action_requested"]
    assert asked.actor.startswith("cli:")
    (delivered,) = [e for e in events if e.type == "delivery.delivered"]
    assert delivered.causation_id == asked.event_id
    wait_for(lambda: not [r for r in listed(katagate, "queue", "list")
                          if r["message_id"] == m], 30, "the queue emptied")
    again = katagate("queue", "retry", m)
    assert again.returncode == 2
    assert "is not waiting for a retry" in again.stderr


def request(gateway, event) -> None:
    publish(gateway.kafka, gateway.names.mail, [event])


def of_type(gateway, message_id: str, kind: str) -> list:
    return [e for e in gateway.mail_events(message_id) if e.type == kind]


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
    from katagate.demo_sink.store import read_messages

    return read_messages(sink.directory)
