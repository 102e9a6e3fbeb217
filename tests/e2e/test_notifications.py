"""Notifications through the whole gateway: a real SMTP client, the real broker, the KATA
emulator, the demo sink. An EICAR message under a Delete rule, with administrator notices and
recipient deletion notices on: the administrator gets a notice from <> naming the message, and
the recipient is told that a message to them was deleted; both deliveries are recorded under
the notices' own ids."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime
from email.policy import default as default_policy

import pytest

from katagate.schemas import NotificationSettings, NotificationSettingsChanged, ProducerRef
from tests.e2e.gateway import Gateway, dump, rule
from tests.integration.kata_harness import publish, wait_for

pytestmark = pytest.mark.kafka

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
ADMIN = "soc@example.net"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, kafka_bootstrap):
    from katagate.eventlog.settings import KafkaSettings
    from tests.conftest import ensure_namespace

    settings: KafkaSettings = ensure_namespace(kafka_bootstrap)
    gateway = Gateway(settings, tmp_path_factory.mktemp("gw"),
                      rules=[rule("delete", "delete", position=1)])
    # Given administrator notices and recipient deletion notices on (after the rule: version 4)
    publish(settings, gateway.names.control, [NotificationSettingsChanged(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC),
        producer=ProducerRef(stage="admin", instance="test"), version=4, actor="test",
        settings=NotificationSettings(admin_addresses=[ADMIN], notify_recipients_deleted=True),
        changed=["admin_addresses", "notify_recipients_deleted"])])
    yield gateway
    gateway.close()


def test_a_detect_notifies_the_administrator_and_a_deletion_the_recipient(gateway):
    # When an EICAR message comes in for bob under the Delete rule
    hostile = b"Invoice\r\n =?utf-8?q?=0D=0ABcc=3A_victim=40example=2Ecom?="
    m = gateway.send(b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: " + hostile +
                     b"\r\nMessage-ID: <eicar-1@example.org>\r\n\r\n" + EICAR + b"\r\n")
    events = gateway.wait_terminal(m)
    assert [e.type for e in events if e.type == "message.discarded"], dump(events)

    # Then two notices reach the sink, both from the null sender <>
    def notices():
        found = [s for s in gateway.sink.messages() if s.envelope_from in ("", "<>")]
        return found if len(found) >= 2 else None

    found = wait_for(notices, 30, "two notices at the sink")
    by_rcpt = {tuple(s.recipients): s for s in found}
    assert set(by_rcpt) == {(ADMIN,), ("bob@example.net",)}, [s.recipients for s in found]
    admin = email.message_from_bytes(by_rcpt[(ADMIN,)].data, policy=default_policy)
    assert m in str(admin["Subject"])
    body = admin.get_content()
    for named in (m, "<alice@example.org>", "<bob@example.net>", "Action: delete"):
        assert named in body
    recipient = email.message_from_bytes(by_rcpt[("bob@example.net",)].data,
                                         policy=default_policy)
    assert recipient["Subject"] == "A message to you was deleted"
    assert "KATA detected a threat in it" in recipient.get_content()
    # The decoded hostile Subject stayed text: no Bcc header, in either notice
    assert admin["Bcc"] is None
    assert recipient["Bcc"] is None
    assert "Bcc: victim" in recipient.get_content()  # quoted on one line, not a header

    # And each notice's delivery is an event under its own id, naming the message it is about
    composed = [e for e in gateway.mail_events() if e.type == "notification.composed"
                and getattr(e, "about", None) == m]
    assert sorted(e.kind for e in composed) == ["detect", "recipient_deleted"]
    for notice in composed:
        delivered = wait_for(lambda n=notice: [e for e in gateway.mail_events(n.message_id)
                                               if e.type == "delivery.delivered"] or None,
                             30, "the notice's delivery")
        assert delivered[0].recipients == notice.to
