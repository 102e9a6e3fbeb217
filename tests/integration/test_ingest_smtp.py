"""The SMTP edge on real sockets and the real broker: what is accepted is in Kafka, byte for
byte, with its MessageReceived; what is refused gets a specific reply and writes nothing."""

from __future__ import annotations

import hashlib
import re
import smtplib
import subprocess
import time

import pytest

from tests.integration.kata_harness import require_swaks
from tests.integration.test_ingest_harness import (
    Ingest,
    RawClient,
    publish_rule,
    raw_of,
    raw_records,
    received,
    send,
)
from tests.trace_field import split_trace

pytestmark = pytest.mark.kafka

QUEUED = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-Z]{26})$")
MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: =?utf-8?q?Quarterly_r=C3=A9sum=C3=A9?=\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b".a line that starts with a dot (smtplib stuffs it, the server unstuffs it)\r\n"
    b"..two dots\r\n"
    b".\r\n"  # the stuffed lone dot must not end the message
    b"\xc3\xa9 8-bit text under 8BITMIME\r\n"
)


def test_an_accepted_message_is_committed_raw_and_received_before_250(kafka_settings):
    publish_rule(kafka_settings, "finance", 3, senders=["*@example.org"],
                 recipients=["*@example.net"])
    with Ingest(kafka_settings) as ingest:
        code, reply = send(ingest.address, "alice@example.org",
                           ["bob@example.net", "carol@example.net"], MESSAGE)
    assert code == 250, reply
    match = QUEUED.match(reply)
    assert match, reply
    [event] = received(kafka_settings)
    assert event.message_id == match.group(1)
    assert event.envelope_from == "alice@example.org"
    assert event.envelope_to == ["bob@example.net", "carol@example.net"]
    assert str(event.client_ip) == "127.0.0.1"
    assert event.helo == "client.test"
    assert event.tls is False
    # The bytes stored are our Received field and the client's bytes as sent (unstuffed)
    stored = raw_of(kafka_settings, event)
    trace, rest = split_trace(stored)
    assert rest == MESSAGE
    assert trace.startswith(b"Received: from client.test (")
    assert b" [127.0.0.1])\r\n\tby " in trace
    assert f" with ESMTP id {event.message_id}".encode() in trace
    assert b"for <" not in trace  # two recipients
    assert event.size == len(stored)
    assert event.sha256 == hashlib.sha256(stored).hexdigest()
    assert event.subject == "Quarterly r\u00e9sum\u00e9"
    assert event.rule_id == "finance"
    assert event.settings_version == 3
    assert event.producer.stage == "ingest"
    assert event.raw.topic.endswith(".mail.raw")


@pytest.mark.parametrize("reverse_dns", [True, False])
def test_the_received_field_names_the_clients_reverse_dns_name_or_unknown(kafka_settings,
                                                                          reverse_dns):
    import socket

    try:
        name = socket.gethostbyaddr("127.0.0.1")[0] if reverse_dns else "unknown"
    except OSError:
        name = "unknown"
    with Ingest(kafka_settings, reverse_dns=reverse_dns) as ingest, \
            smtplib.SMTP(*ingest.address, timeout=30) as client:
        client.ehlo("client.test")
        time.sleep(0.2)  # the lookup runs in the background from EHLO on
        client.sendmail("alice@example.org", ["bob@example.net"], b"Subject: s\r\n\r\nx\r\n")
    [event] = received(kafka_settings)
    trace, _ = split_trace(raw_of(kafka_settings, event))
    assert trace.startswith(f"Received: from client.test ({name} [127.0.0.1])\r\n".encode())


def test_a_large_message_is_chunked_and_reads_back_equal(kafka_settings):
    line = b"x" * 998 + b"\r\n"
    data = b"Subject: big\r\n\r\n" + line * 2600  # 2.6 MB: three chunks
    with Ingest(kafka_settings, max_message_bytes=4 * 1024 * 1024) as ingest:
        code, reply = send(ingest.address, "alice@example.org", ["bob@example.net"], data)
    assert code == 250, reply
    [event] = received(kafka_settings)
    assert len(event.raw.offsets) == 3
    assert split_trace(raw_of(kafka_settings, event))[1] == data


def test_the_null_sender_is_accepted_and_recorded_as_empty(kafka_settings):
    with Ingest(kafka_settings) as ingest:
        code, reply = send(ingest.address, "", ["bob@example.net"], b"Subject: bounce\r\n\r\nx\r\n")
    assert code == 250, reply
    [event] = received(kafka_settings)
    assert event.envelope_from == ""
    assert event.rule_id is None
    assert event.settings_version == 0


def test_open_relay_is_refused_and_relay_networks_may_send_anywhere(kafka_settings):
    with Ingest(kafka_settings) as ingest, smtplib.SMTP(*ingest.address) as client:
        client.ehlo("client.test")
        client.mail("alice@example.org")
        code, reply = client.rcpt("victim@elsewhere.test")
        assert code == 550
        assert reply.decode().startswith("5.7.1 Relaying denied: elsewhere.test is not a relay")
        code, reply = client.rcpt("bob@EXAMPLE.net")
        assert code == 250
    with Ingest(kafka_settings, relay_domains=[], relay_networks=["127.0.0.0/8"]) as ingest:
        code, reply = send(ingest.address, "alice@example.org", ["anyone@elsewhere.test"],
                           b"Subject: s\r\n\r\nx\r\n")
    assert code == 250, reply
    assert [e.envelope_to for e in received(kafka_settings)] == [["anyone@elsewhere.test"]]


@pytest.mark.parametrize(("rcpt", "routing"), [
    ("<user%elsewhere.test@example.net>", "%"),
    ("<elsewhere.test!user@example.net>", "!"),
    ('<"user@elsewhere.test"@example.net>', "@"),
])
def test_given_sender_specified_routing_when_rcpt_then_550_5_7_1_and_nothing_written(
        kafka_settings, rcpt, routing):
    # Given a relay domain, and a client in a relay network too; when RCPT names another
    # destination in its local part (percent hack, bang path, quoted @); then 550 5.7.1, and
    # DATA has no recipient to take.
    with Ingest(kafka_settings, relay_networks=["127.0.0.0/8"]) as ingest:
        client = RawClient(ingest.address)
        client.cmd("EHLO client.test")
        assert client.cmd("MAIL FROM:<alice@example.org>").startswith("250")
        assert client.cmd(f"RCPT TO:{rcpt}") == (
            f"550 5.7.1 Relaying denied: sender-specified routing ({routing!r} in the local part)")
        assert client.cmd("DATA").startswith("503 5.5.1")
        client.close()
    assert received(kafka_settings) == []
    assert raw_records(kafka_settings) == 0


def test_given_a_message_that_looped_when_data_ends_then_554_5_4_6_and_nothing_written(
        kafka_settings):
    # Given a message carrying 50 Received fields (ours would make 51: a loop)
    hops = b"".join(b"Received: from a%d by b; Thu, 03 Dec 2026 10:00:00 +0000\r\n" % i
                    for i in range(50))
    with Ingest(kafka_settings) as ingest:
        code, reply = send(ingest.address, "alice@example.org", ["bob@example.net"],
                           hops + b"Subject: loop\r\n\r\nbody\r\n")
    # Then 554 5.4.6 naming the count, and nothing reaches the log
    assert (code, reply) == (554, "5.4.6 Too many hops: 50 Received header fields, limit 50 "
                                  "(a mail loop?)")
    assert received(kafka_settings) == []
    assert raw_records(kafka_settings) == 0


def test_given_two_subject_fields_when_data_ends_then_554_5_6_0_and_nothing_written(
        kafka_settings):
    # Given a message with two Subject fields (the tag would mark only the first), when its
    # DATA ends, then 554 5.6.0 with the reason, and nothing reaches the log.
    data = b"Subject: invoice\r\nFrom: a@example.org\r\nSubject: hello\r\n\r\nbody\r\n"
    with Ingest(kafka_settings) as ingest:
        code, reply = send(ingest.address, "alice@example.org", ["bob@example.net"], data)
    assert (code, reply) == (554, "5.6.0 2 Subject header fields; RFC 5322 allows at most one")
    assert received(kafka_settings) == []
    assert raw_records(kafka_settings) == 0


def test_given_a_header_section_over_1_mib_when_data_ends_then_554_5_6_0_and_nothing_written(
        kafka_settings):
    # Given a 1.1 MiB header section (beyond what the tag scans), when its DATA ends, then
    # 554 5.6.0 says why, and nothing reaches the log; the same message with 1 MiB less of
    # header is accepted.
    filler = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"f" * 80) for i in range(12_000))
    with Ingest(kafka_settings) as ingest:
        code, reply = send(ingest.address, "alice@example.org", ["bob@example.net"],
                           b"Subject: big\r\n" + filler + b"\r\nbody\r\n")
        assert (code, reply) == (
            554, "5.6.0 Header section over 1048576 octets: the subject tag could not mark it")
        assert received(kafka_settings) == []
        code, reply = send(ingest.address, "alice@example.org", ["bob@example.net"],
                           b"Subject: big\r\n" + filler[:100_000] + b"\r\nbody\r\n")
    assert code == 250, reply
    assert len(received(kafka_settings)) == 1


@pytest.mark.parametrize(("limit", "count"), [(100, 99), (100, 100), (100, 101), (1000, 1000),
                                              (1000, 1001)])
def test_recipients_up_to_the_limit_are_accepted_and_more_get_452(kafka_settings, limit, count):
    with Ingest(kafka_settings, max_recipients=limit) as ingest, \
            smtplib.SMTP(*ingest.address) as client:
        client.ehlo("client.test")
        client.mail("alice@example.org")
        replies = [client.rcpt(f"r{i}@example.net") for i in range(count)]
        code, reply = client.data(b"Subject: many\r\n\r\nx\r\n")
    accepted = min(count, limit)
    assert all(code == 250 for code, _ in replies[:accepted])
    assert [(c, r.decode()) for c, r in replies[accepted:]] == [
        (452, "4.5.3 Too many recipients")] * (count - accepted)
    assert code == 250, reply
    [event] = received(kafka_settings)
    assert len(event.envelope_to) == accepted


def test_an_oversized_message_gets_552_and_nothing_is_written(kafka_settings):
    limit = 10_000
    head = b"Subject: s\r\n\r\n"
    exact = head + (b"y" * 98 + b"\r\n") * 99 + b"y" * (limit - len(head) - 9900 - 2) + b"\r\n"
    assert len(exact) == limit
    with Ingest(kafka_settings, max_message_bytes=limit) as ingest:
        with smtplib.SMTP(*ingest.address) as client:
            client.ehlo("client.test")
            assert client.has_extn("size")
            assert client.esmtp_features["size"] == str(limit)
            code, reply = client.mail("alice@example.org", ["SIZE=10001"])  # declared too big
            assert (code, reply.decode()[:6]) == (552, "5.3.4 ")
            client.mail("alice@example.org", ["SIZE=100"])  # a lying SIZE
            client.rcpt("bob@example.net")
            code, reply = client.data(exact + b"z\r\n")
            assert code == 552
            assert reply.decode().startswith("5.3.4 Message size exceeds fixed maximum")
        assert raw_records(kafka_settings) == 0
        code, reply = send(ingest.address, "alice@example.org", ["bob@example.net"], exact,
                           ("SIZE=10000",))
    assert code == 250, reply
    # The limit is on what the client sent: our Received field comes on top of it
    [event] = received(kafka_settings)
    trace, rest = split_trace(raw_of(kafka_settings, event))
    assert (len(rest), event.size) == (limit, limit + len(trace))


@pytest.mark.parametrize(("body", "what"), [
    (b"one\ntwo\r\n", "bare LF"),
    (b"one\rtwo\r\n", "bare CR"),
    (b"one\x00two\r\n", "NUL"),
])
def test_bare_lf_cr_and_nul_are_refused_with_550_and_nothing_is_written(kafka_settings, body,
                                                                      what):
    with Ingest(kafka_settings) as ingest:
        client = RawClient(ingest.address)
        client.envelope()
        client.send(b"Subject: bad\r\n\r\n" + body)
        reply = client.cmd(b".")
        assert reply.startswith(f"550 5.6.11 {what} not allowed: line 3")
        # The session goes on: a clean message afterwards is accepted.
        assert client.cmd("MAIL FROM:<alice@example.org>").startswith("250")
        assert client.cmd("RCPT TO:<bob@example.net>").startswith("250")
        assert client.cmd("DATA").startswith("354")
        client.send(b"Subject: good\r\n\r\nfine\r\n")
        assert client.cmd(b".").startswith("250 2.0.0 Ok: queued as ")
        client.close()
    assert [e.subject for e in received(kafka_settings)] == ["good"]
    assert raw_records(kafka_settings) == 1


@pytest.mark.parametrize(("length", "accepted"), [(998, True), (999, False), (1000, False),
                                                  (1001, False), (10_000, False)])
def test_text_lines_over_1000_octets_with_crlf_get_500(kafka_settings, length, accepted):
    with Ingest(kafka_settings) as ingest:
        client = RawClient(ingest.address)
        client.envelope()
        client.send(b"Subject: lines\r\n\r\n" + b"q" * length + b"\r\n")
        reply = client.cmd(b".")
        client.close()
    if accepted:
        assert reply.startswith("250 2.0.0 Ok: queued as ")
        assert len(received(kafka_settings)) == 1
    else:
        assert reply.startswith("500 5.5.2 Line too long"), reply
        assert raw_records(kafka_settings) == 0


def test_a_megabyte_without_a_newline_is_refused(kafka_settings):
    with Ingest(kafka_settings) as ingest:
        client = RawClient(ingest.address)
        client.envelope()
        client.send(b"Subject: x\r\n\r\n" + b"w" * 1_048_576 + b"\r\n")
        reply = client.cmd(b".")
        client.close()
    assert reply.startswith(("500 5.5.2", "552 5.3.4")), reply
    assert raw_records(kafka_settings) == 0


def test_address_limits_over_smtp(kafka_settings):
    with Ingest(kafka_settings) as ingest:
        client = RawClient(ingest.address)
        assert client.cmd("EHLO client.test").startswith("250")
        assert client.cmd(f"MAIL FROM:<{'a' * 65}@example.org>").startswith("501 5.1.7 Path too")
        assert client.cmd(f"MAIL FROM:<{'a' * 64}@example.org>").startswith("250 2.1.0")
        assert client.cmd(f"RCPT TO:<{'b' * 65}@example.net>").startswith("501 5.1.3 Path too")
        assert client.cmd(b"RCPT TO:<b\x00c@example.net>").startswith("553 5.1.3")
        assert client.cmd("RCPT TO:<>").startswith("553 5.1.3")
        assert client.cmd("RCPT TO:<postmaster>").startswith("553 5.1.3")
        assert client.cmd(f"RCPT TO:<{'b' * 64}@example.net>").startswith("250 2.1.5")
        assert client.cmd(b"RCPT TO:<caf\xc3\xa9@example.net>").startswith("500")  # no SMTPUTF8
        assert client.cmd("EHLO " + "h" * 300).startswith("501 5.5.4")
        assert client.cmd("X" * 10_000).startswith("500 5.5.2 Command line too long")
        assert client.cmd("NOOP").startswith("250 2.0.0")
        client.close()
    assert raw_records(kafka_settings) == 0


def test_the_same_command_past_the_session_limit_closes_with_421(kafka_settings):
    with Ingest(kafka_settings, max_commands=20) as ingest:
        client = RawClient(ingest.address)
        client.send(b"NOOP\r\n" * 25)
        replies = [client.reply() for _ in range(21)]
        assert replies[:20] == ["250 2.0.0 Ok"] * 20
        assert replies[20] == "421 4.7.0 Too many commands, closing connection"
        assert client.closed()


def test_disconnecting_mid_data_writes_nothing(kafka_settings):
    with Ingest(kafka_settings) as ingest:
        client = RawClient(ingest.address)
        client.envelope()
        client.send(b"Subject: cut\r\n\r\nhalf a message\r\n")
        client.close()
        time.sleep(0.5)
        code, _ = send(ingest.address, "alice@example.org", ["bob@example.net"],
                       b"Subject: whole\r\n\r\nx\r\n")
        assert code == 250
    assert [e.subject for e in received(kafka_settings)] == ["whole"]
    assert raw_records(kafka_settings) == 1


def test_idle_sessions_and_stalled_data_time_out(kafka_settings):
    with Ingest(kafka_settings, session_timeout_s=0.5, data_timeout_s=0.5) as ingest:
        idle = RawClient(ingest.address)
        assert idle.closed(timeout=5)
        stalled = RawClient(ingest.address)
        stalled.envelope()
        stalled.send(b"Subject: slow\r\n\r\n")
        assert stalled.closed(timeout=5)
    assert raw_records(kafka_settings) == 0


def test_a_new_rule_applies_without_a_restart(kafka_settings):
    subject = b"Subject: r\r\n\r\nx\r\n"
    with Ingest(kafka_settings) as ingest:
        send(ingest.address, "alice@example.org", ["bob@example.net"], subject)
        publish_rule(kafka_settings, "late-rule", 5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            send(ingest.address, "alice@example.org", ["bob@example.net"], subject)
            if received(kafka_settings)[-1].rule_id == "late-rule":
                break
            time.sleep(0.2)
    events = sorted(received(kafka_settings), key=lambda e: e.message_id)
    assert (events[0].rule_id, events[0].settings_version) == (None, 0)
    assert (events[-1].rule_id, events[-1].settings_version) == ("late-rule", 5)


def test_swaks_end_to_end(kafka_settings):
    require_swaks()
    with Ingest(kafka_settings) as ingest:
        result = subprocess.run(
            ["swaks", "--server", ingest.host, "--port", str(ingest.port),
             "--from", "alice@example.org", "--to", "bob@example.net,carol@example.net",
             "--helo", "swaks.test", "--header", "Subject: from swaks", "--body", "hello"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"<-  250 2\.0\.0 Ok: queued as [0-9A-Z]{26}", result.stdout), result.stdout
    [event] = received(kafka_settings)
    assert event.helo == "swaks.test"
    assert event.subject == "from swaks"
    assert event.envelope_to == ["bob@example.net", "carol@example.net"]
    assert b"hello" in raw_of(kafka_settings, event)


def test_a_persistent_connection_may_carry_more_messages_than_the_command_limit(kafka_settings):
    with Ingest(kafka_settings, max_commands=10) as ingest:
        host, port = ingest.address
        with smtplib.SMTP(host, port, timeout=30) as client:
            for i in range(12):
                client.sendmail("alice@example.org", ["bob@example.net"],
                                f"Subject: n{i}\r\n\r\nx\r\n".encode())
    assert len(received(kafka_settings)) == 12
