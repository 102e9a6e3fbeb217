"""Given the real broker and a live projector: a Backup copy found with the filters, its safe
view and its .eml read back from katagate.backup, a resend and a deletion written as requests
by the signed-in administrator, and a copy that is gone refused; the delivery queue listed and
acted on. Refusals write nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.raw import CHUNK_BYTES, backup_chunks
from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    BackupRemoved,
    BackupRetained,
    DeliveryDeferred,
    Event,
    MessageReceived,
    ProducerRef,
    RawLocation,
    decode_event,
)
from tests.console_client import console_client, console_token_file, projector
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import publish, wait_for
from tests.integration.test_console_mail import signed_in  # noqa: F401 - the fixture

pytestmark = pytest.mark.kafka
COPY_ID = "01TESTBACKUP01"
QUEUED_ID = "01TESTQUEUE001"
ORIGINAL = (b"From: eve@suspect.example.org\r\nTo: bob@example.net\r\n"
            b"Subject: =?utf-8?q?Rechnung_f=C3=BCr_Dezember?=\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/html; charset=utf-8\r\n\r\n"
            b"<p>Pay <b>now</b></p><script>alert(1)</script>\r\n")
DECIDER = ProducerRef(stage="decider", instance="decider-0")


def received(names: TopicNames, message_id: str, sender: str, size: int) -> MessageReceived:
    return MessageReceived(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), message_id=message_id,
        producer=ProducerRef(stage="ingest", instance="ingest-0"), envelope_from=sender,
        envelope_to=["bob@example.net"], client_ip="192.0.2.10", helo="mx.example.org",
        tls=False, size=size, sha256="0" * 64, subject="x", rule_id=None, settings_version=1,
        raw=RawLocation(topic=names.raw, partition=0, offsets=[0], chunk_bytes=CHUNK_BYTES))


def retained_copy(kafka: Any) -> BackupRetained:
    """What apply and the Backup ledger write for a detected message's copy: the bytes in
    katagate.backup, the ledger's backup.retained on katagate.quarantine and katagate.mail."""
    names = TopicNames(kafka.topic_prefix)
    chunked = backup_chunks(names.backup, COPY_ID, ORIGINAL, partition=0)
    producer = TransactionalProducer(kafka, f"test-apply-{uuid.uuid4().hex[:8]}")
    producer.begin()
    located = producer.produce_located(chunked.records)
    producer.commit()
    producer.close()
    now = datetime.now(UTC)
    retained = BackupRetained(
        event_id=uuid.uuid4(), occurred_at=now, producer=DECIDER, message_id=COPY_ID,
        size=len(ORIGINAL), bytes_in_use=len(ORIGINAL), copies_in_use=1, stored_at=now,
        location=RawLocation(topic=names.backup, partition=located[0][0],
                             offsets=[o for _p, o in located], chunk_bytes=CHUNK_BYTES),
        sha256=chunked.sha256, max_age_days=30, expires_at=now + timedelta(days=30),
        limit_bytes=10 << 30)
    publish(kafka, names.mail, [received(names, COPY_ID, "eve@suspect.example.org",
                                         len(ORIGINAL)), retained])
    publish(kafka, names.quarantine, [retained])
    return retained


def requests(kafka: Any, kind: str) -> list[Event]:
    names = TopicNames(kafka.topic_prefix)
    return [e for e in (decode_event(r.value) for r in read_all(kafka, names.mail))
            if e.type == kind]


def test_a_backup_copy_is_found_shown_as_text_downloaded_resent_and_deleted(
        signed_in, kafka_settings):  # noqa: F811 - the fixture
    client, csrf = signed_in
    retained = retained_copy(kafka_settings)
    # Given the copy, found by its sender's domain
    found = wait_for(lambda: client.get("/api/backup/copies?from=*@suspect.example.org"
                                        ).json()["messages"], 30, "the copy listed")
    assert [(c["message_id"], c["backup"]["state"]) for c in found] == [(COPY_ID, "held")]
    bad = client.get("/api/backup/copies?state=gone")
    assert (bad.status_code, bad.json()["field"], bad.json()["allowed"]) == (
        400, "state", ["held", "removed"])
    usage = client.get("/api/backup/usage").json()
    assert (usage["bytes_in_use"], usage["copies_in_use"]) == (len(ORIGINAL), 1)

    # When an administrator opens it: decoded headers, the HTML as text, never as markup
    shown = client.get(f"/api/backup/copies/{COPY_ID}").json()
    assert {"name": "Subject", "value": "Rechnung für Dezember"} in shown["view"]["headers"]
    assert "Pay now" in shown["view"]["text"]
    assert "<" not in shown["view"]["text"]
    assert "alert" not in shown["view"]["text"]
    page = client.get(f"/backup/{COPY_ID}").text
    assert "Rechnung für Dezember" in page
    assert "<script>alert" not in page
    # And downloads it: the bytes as received, as an attachment, never sniffed
    eml = client.get(f"/api/backup/copies/{COPY_ID}/eml")
    assert eml.content == ORIGINAL
    assert eml.headers["content-type"] == "message/rfc822"
    assert eml.headers["content-disposition"] == f'attachment; filename="{COPY_ID}.eml"'
    assert eml.headers["x-content-type-options"] == "nosniff"

    # A resend to something that is not an address is refused naming `to`; nothing written
    refused = client.post(f"/api/backup/copies/{COPY_ID}/resend", headers=csrf,
                          json={"to": ["not an address"]})
    assert (refused.status_code, refused.json()["field"]) == (422, "to")
    # When it is resent to an address given
    resent = client.post(f"/api/backup/copies/{COPY_ID}/resend", headers=csrf,
                         json={"to": ["helpdesk@example.net"], "comment": "false positive"})
    assert resent.status_code == 202, resent.text
    # Then the request names the administrator and carries the copy's place and digest
    (request,) = requests(kafka_settings, "backup.resend_requested")
    assert (request.actor, request.recipients, request.to_original) == (  # type: ignore[attr-defined]
        "admin", ["helpdesk@example.net"], False)
    assert (request.location, request.sha256) == (  # type: ignore[attr-defined]
        retained.location, retained.sha256)
    assert request.envelope_from == "eve@suspect.example.org"  # type: ignore[attr-defined]

    # When it is deleted, a request by the administrator is written
    deleted = client.request("DELETE", f"/api/backup/copies/{COPY_ID}", headers=csrf,
                             json={"comment": "done"})
    assert deleted.status_code == 202, deleted.text
    (asked,) = requests(kafka_settings, "backup.delete_requested")
    assert asked.actor == "admin"  # type: ignore[attr-defined]
    # And once the ledger removed it, it shows as removed and nothing more can be done
    names = TopicNames(kafka_settings.topic_prefix)
    removed = BackupRemoved(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC),
                            producer=DECIDER, message_id=COPY_ID, size=len(ORIGINAL),
                            bytes_in_use=0, copies_in_use=0, cause="deleted_by_admin",
                            actor="admin", max_age_days=30, limit_bytes=10 << 30)
    publish(kafka_settings, names.mail, [removed])
    publish(kafka_settings, names.quarantine, [removed])
    gone = wait_for(lambda: (c := client.get(f"/api/backup/copies/{COPY_ID}").json())["view"]
                    is None and c, 30, "the copy shown as removed")
    assert gone["copy"]["removed"]["cause"] == "deleted_by_admin"
    for method, path, body in [("POST", f"/api/backup/copies/{COPY_ID}/resend", {"to": None}),
                               ("DELETE", f"/api/backup/copies/{COPY_ID}", None),
                               ("GET", f"/api/backup/copies/{COPY_ID}/eml", None)]:
        answer = client.request(method, path, headers=csrf, json=body)
        assert (answer.status_code, answer.json()["field"]) == (409, "message_id"), path
    assert client.get("/api/backup/copies/01NOCOPY000001").status_code == 404
    assert len(requests(kafka_settings, "backup.resend_requested")) == 1
    assert len(requests(kafka_settings, "backup.delete_requested")) == 1


def test_the_delivery_queue_lists_deferred_messages_and_each_action_is_a_request(
        signed_in, kafka_settings):  # noqa: F811 - the fixture
    client, csrf = signed_in
    names = TopicNames(kafka_settings.topic_prefix)
    retry_at = datetime.now(UTC) + timedelta(minutes=5)
    # Given a message the next hop deferred
    publish(kafka_settings, names.mail, [
        received(names, QUEUED_ID, "frank@example.org", 300),
        DeliveryDeferred(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC),
                         producer=DECIDER, message_id=QUEUED_ID, next_hop="127.0.0.1:2525",
                         attempt=1, reply="451 4.3.0 try again later", retry_at=retry_at)])
    (row,) = wait_for(lambda: client.get("/api/queue/messages").json()["messages"], 30,
                      "the deferred message listed")
    assert (row["message_id"], row["last_reply"], row["envelope_from"]) == (
        QUEUED_ID, "451 4.3.0 try again later", "frank@example.org")
    assert row["next_attempt_at"] is not None
    # When an administrator asks to return it to its sender now
    bounced = client.post(f"/api/queue/messages/{QUEUED_ID}/bounce", headers=csrf, json={})
    assert bounced.status_code == 202, bounced.text
    (request,) = requests(kafka_settings, "queue.action_requested")
    assert (request.action, request.actor) == ("bounce", "admin")  # type: ignore[attr-defined]
    # A message that is not queued, or not known, is refused naming it; nothing written
    publish(kafka_settings, names.mail, [received(names, "01TESTNOTQUEUED", "g@example.org",
                                                  10)])
    wait_for(lambda: client.get("/api/messages/01TESTNOTQUEUED").status_code == 200, 30,
             "the other message folded")
    for message_id, status in (("01TESTNOTQUEUED", 409), ("01UNKNOWN00001", 404)):
        answer = client.post(f"/api/queue/messages/{message_id}/retry", headers=csrf, json={})
        assert (answer.status_code, answer.json()["field"]) == (status, "message_id")
    assert len(requests(kafka_settings, "queue.action_requested")) == 1


def test_a_session_whose_account_was_removed_never_reads_a_copy_on_its_page(
        kafka_settings, tmp_path):
    with projector(kafka_settings, tmp_path / "projector") as live:
        assert live.address is not None
        with console_client(tmp_path / "console", kafka_settings,
                            projector_url=f"http://{live.address[0]}:{live.address[1]}",
                            projector_token_file=console_token_file(tmp_path / "projector")
                            ) as (client, console, _clock):
            # Given a copy, and an auditor signed in (metadata only: its content refused)
            retained_copy(kafka_settings)
            console.accounts.add_user("alice", "auditor", "an auditor's passphrase")
            assert client.post("/api/login", json={
                "name": "alice", "password": "an auditor's passphrase"}).status_code == 200
            wait_for(lambda: client.get("/api/backup/copies").json()["messages"], 30,
                     "the copy listed")
            assert client.get(f"/backup/{COPY_ID}").status_code == 403
            # When the account leaves the accounts file while its session still lives
            assert console.accounts.remove_user("alice")
            # Then its session reads no content on the copy's page: it is sent to sign in
            page = client.get(f"/backup/{COPY_ID}", follow_redirects=False)
            assert page.status_code == 303
            assert page.headers["location"].startswith("/login")
            assert "Dezember" not in page.text
            assert client.get(f"/api/backup/copies/{COPY_ID}").status_code == 401
