"""Given the real broker and a live projector, the console's mail views and requests: a
message's timeline as the projector folds it (API and page), and Send now / Delete on a
selection of the KATA Quarantine, refused whole (naming the messages not waiting) before
anything is written, else one event per message by the signed-in administrator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    Event,
    MessageReceived,
    ProducerRef,
    QuarantineAdmitted,
    RawLocation,
    decode_event,
)
from tests.console_client import console_client, console_token_file, projector, sign_in
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import publish, wait_for

pytestmark = pytest.mark.kafka
IDS = ("01TESTAAAA0001", "01TESTAAAA0002", "01TESTAAAA0003")


def admitted(kafka_settings: Any, message_ids: tuple[str, ...]) -> None:
    """What ingest and admission write for each message: mail.received, then the ledger's
    quarantine.admitted on katagate.quarantine and its mirror on katagate.mail."""
    names = TopicNames(kafka_settings.topic_prefix)
    now = datetime.now(UTC)
    received: list[Event] = []
    ledger: list[Event] = []
    for n, message_id in enumerate(message_ids, 1):
        received.append(MessageReceived(
            event_id=uuid.uuid4(), occurred_at=now, message_id=message_id,
            producer=ProducerRef(stage="ingest", instance="ingest-0"),
            envelope_from=f"partner{n}@example.org", envelope_to=["bob@example.net"],
            client_ip="192.0.2.10", helo="mx.example.org", tls=False, size=100 * n,
            sha256="0" * 64, subject=f"invoice {n}", rule_id=None, settings_version=1,
            raw=RawLocation(topic=names.raw, partition=0, offsets=[n], chunk_bytes=65536)))
        ledger.append(QuarantineAdmitted(
            event_id=uuid.uuid4(), occurred_at=now, message_id=message_id,
            producer=ProducerRef(stage="decider", instance="decider-0"), size=100 * n,
            rule_id=None, settings_version=1, response_timeout_s=600,
            deadline_at=now + timedelta(seconds=600), limit_bytes=1 << 30, limit_messages=5000,
            bytes_in_use=sum(100 * k for k in range(1, n + 1)), messages_in_use=n))
    publish(kafka_settings, names.mail, [*received, *ledger])
    publish(kafka_settings, names.quarantine, ledger)


def forced(kafka_settings: Any) -> list[Event]:
    names = TopicNames(kafka_settings.topic_prefix)
    events = [decode_event(r.value) for r in read_all(kafka_settings, names.mail)]
    return [e for e in events if e.type.startswith("quarantine.forced")]


@pytest.fixture
def signed_in(kafka_settings, tmp_path) -> Iterator[tuple[Any, dict[str, str]]]:
    with projector(kafka_settings, tmp_path / "projector") as live:
        assert live.address is not None
        with console_client(tmp_path / "console", kafka_settings,
                            projector_url=f"http://{live.address[0]}:{live.address[1]}",
                            projector_token_file=console_token_file(tmp_path / "projector")
                            ) as (client, _console, _clock):
            yield client, {"X-CSRF-Token": sign_in(client)}


def test_a_selection_is_refused_whole_naming_what_is_not_waiting_then_acted_on_at_once(
        signed_in, kafka_settings):
    client, csrf = signed_in
    # Given three messages waiting in the KATA Quarantine
    admitted(kafka_settings, IDS)
    wait_for(lambda: len(client.get("/api/quarantine/messages").json()["messages"]) == 3, 30,
             "the projector to list the three")

    # When Delete is asked for two of them and one that is not waiting
    refused = client.post("/api/quarantine/actions", headers=csrf, json={
        "action": "delete", "message_ids": [IDS[0], "01NOTWAITING9", IDS[1]]})
    # Then the whole request is refused naming it, and nothing is written
    assert refused.status_code == 404, refused.text
    assert refused.json()["field"] == "message_ids"
    assert "01NOTWAITING9" in refused.json()["error"]
    assert IDS[0] not in refused.json()["error"]
    bad = client.post("/api/quarantine/actions", headers=csrf,
                      json={"action": "release", "message_ids": [IDS[0]]})
    assert (bad.status_code, bad.json()["field"]) == (422, "action")
    assert bad.json()["allowed"] == ["send-now", "delete"]
    assert forced(kafka_settings) == []

    # When Send now is asked for two waiting messages
    sent = client.post("/api/quarantine/actions", headers=csrf, json={
        "action": "send-now", "message_ids": [IDS[0], IDS[2]], "comment": "partner"})
    # Then each gets one forced release by the signed-in administrator
    assert sent.status_code == 202, sent.text
    assert sent.json()["message_ids"] == [IDS[0], IDS[2]]
    events = forced(kafka_settings)
    assert sorted((e.type, e.message_id, e.actor, e.comment)  # type: ignore[attr-defined]
                  for e in events) == [
        ("quarantine.forced_release", IDS[0], "admin", "partner"),
        ("quarantine.forced_release", IDS[2], "admin", "partner")]
    assert {str(e.event_id) for e in events} == {e["event_id"] for e in sent.json()["events"]}


def test_a_messages_timeline_comes_from_the_projector_on_the_api_and_its_page(
        signed_in, kafka_settings):
    client, _csrf = signed_in
    admitted(kafka_settings, IDS[:1])
    timeline = wait_for(lambda: (answer := client.get(f"/api/messages/{IDS[0]}")
                                 ).status_code == 200 and answer.json(), 30,
                        "the projector to fold the message")
    assert [e["type"] for e in timeline["events"]] == ["mail.received", "quarantine.admitted"]
    page = client.get(f"/tracking/{IDS[0]}")
    assert page.status_code == 200
    for text in ("mail.received", "ingest/ingest-0", "quarantine.admitted",
                 "decider/decider-0", "partner1@example.org"):
        assert text in page.text
    # An id the log never saw, and one that is not an id: said so, nothing guessed
    assert client.get("/api/messages/01UNKNOWN00001").status_code == 404
    assert client.get("/tracking/01UNKNOWN00001").status_code == 404
    malformed = client.get("/api/messages/not-an-id")
    assert (malformed.status_code, malformed.json()["field"]) == (400, "message_id")
    # A misspelt filter is refused naming it and the filters there are
    misspelt = client.get("/api/messages?sender=partner1@example.org")
    assert (misspelt.status_code, misspelt.json()["field"]) == (400, "sender")
    assert "from" in misspelt.json()["allowed"]
