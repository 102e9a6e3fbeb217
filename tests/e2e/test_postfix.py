"""katagate next to Debian's real Postfix, both placements of docs/POSTFIX.md, through the whole
gateway (real broker, KATA emulator, swaks as the sending MTA): a clean message arrives in the
mailbox Postfix delivers to, an EICAR one under a Delete rule is discarded and never arrives.

1. In front: swaks -> katagate -> Postfix (the reinjection smtpd, katagate's next hop) -> mailbox.
2. As Postfix's content_filter: swaks -> Postfix smtpd -> queue -> katagate (with XFORWARD, so
   the events name the client Postfix received from) -> Postfix reinjection smtpd -> mailbox.
"""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest

from katagate.eventlog.broker import free_port
from tests.e2e.gateway import Gateway, rule
from tests.e2e.postfix import Postfix
from tests.integration.kata_harness import require_swaks, wait_for

pytestmark = pytest.mark.kafka

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, kafka_bootstrap):
    from tests.conftest import ensure_namespace

    require_swaks()
    ingest_port = free_port()
    postfix = Postfix(filter_port=ingest_port)
    try:
        # katagate delivers to the reinjection smtpd, and takes XFORWARD from the Postfix.
        gateway = Gateway(
            ensure_namespace(kafka_bootstrap), tmp_path_factory.mktemp("gw"),
            rules=[rule("default", "delete")],
            ingest={"port": ingest_port, "xforward_hosts": ["127.0.0.1/32"]},
            decider={"next_hop_port": postfix.reinject_port})
    except BaseException:
        postfix.stop()
        raise
    yield gateway, postfix, ingest_port
    gateway.close()
    postfix.stop()


def swaks(port: int, subject: str, body: str, source: str = "127.0.0.1") -> str:
    """Send one message as an MTA would; the server's last reply to DATA."""
    done = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--local-interface", source,
         "--ehlo", "client.example.org", "--from", "alice@example.org",
         "--to", "bob@example.net", "--header", f"Subject: {subject}", "--body", body],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (queued,) = re.findall(r"<-  (250 .*queued as \S+)", done.stdout)
    return queued


def received_event(gateway: Gateway, subject: str):
    def found():
        return next((e for e in gateway.mail_events() if e.type == "mail.received"
                     and e.subject == subject), None)
    return wait_for(found, 30, f"katagate's mail.received for {subject!r}")


def in_mailbox(postfix: Postfix, subject: str) -> list[bytes]:
    return [m for m in postfix.delivered() if f"Subject: {subject}".encode() in m]


def check_placement(gateway: Gateway, postfix: Postfix, port: int, source: str):
    clean, detected = f"clean {uuid.uuid4().hex[:8]}", f"eicar {uuid.uuid4().hex[:8]}"
    # When a clean message and an EICAR one are sent
    swaks(port, clean, "Nothing to see here.", source)
    swaks(port, detected, EICAR, source)
    # Then the clean one arrives in the mailbox Postfix delivers to, through katagate
    (arrived,) = wait_for(lambda: in_mailbox(postfix, clean), 45, "the clean message")
    assert b"by gw.example.net with ESMTP id" in arrived
    # And the EICAR one is handled per the rule (Delete) and never arrives
    m = received_event(gateway, detected)
    events = gateway.wait_terminal(m.message_id)
    assert "message.discarded" in [e.type for e in events]
    assert in_mailbox(postfix, detected) == []
    return received_event(gateway, clean), m


def test_in_front_of_postfix_clean_mail_reaches_its_mailbox_and_eicar_is_deleted(stack):
    # Given katagate receiving from the internet, Postfix its next hop
    gateway, postfix, ingest_port = stack
    clean, _ = check_placement(gateway, postfix, ingest_port, "127.0.0.2")
    assert str(clean.client_ip) == "127.0.0.2"


def test_as_postfix_content_filter_with_xforward_the_events_name_the_original_client(stack):
    # Given Postfix receiving from the internet, katagate its content_filter
    gateway, postfix, _ = stack
    clean, detected = check_placement(gateway, postfix, postfix.smtpd_port, "127.0.0.3")
    # Then katagate's events name the client Postfix received from, not Postfix
    assert [(str(e.client_ip), e.helo) for e in (clean, detected)] == [
        ("127.0.0.3", "client.example.org")] * 2
    # And Postfix's log shows the detected message handed to katagate, accepted with 250
    assert re.search(rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent \(250 2\.0\.0 Ok: "
                     rf"queued as {detected.message_id}\)", postfix.log())
