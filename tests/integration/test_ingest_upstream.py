"""Ingest behind a load balancer (PROXY protocol) and behind a Postfix (XFORWARD), on real
sockets and the real broker: the client named is the one in the event and our Received field,
and a PROXY header's also in the relay check and the per-client cap (XFORWARD's is not: relaying
is decided on the connection, as in Postfix); a header or command from a peer not trusted is
refused with a specific reply and writes nothing."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.integration.test_ingest_harness import (
    Ingest,
    RawClient,
    client_tls_context,
    raw_of,
    received,
    self_signed,
)

pytestmark = pytest.mark.kafka

BODY = b"Subject: via the balancer\r\n\r\nhello\r\n.\r\n"


class ProxiedClient(RawClient):
    """A client that sends `header` first (if any), from `source` (all of 127/8 is this
    host)."""

    def __init__(self, address: tuple[str, int], header: bytes, source: str = "127.0.0.1"
                 ) -> None:
        self.sock = socket.create_connection(address, 10, source_address=(source, 0))
        self.sock.sendall(header)
        self.buffer = b""
        self.greeting = self.reply()


def v2_tcp6(source: str, port: int) -> bytes:
    addresses = (socket.inet_pton(socket.AF_INET6, source)
                 + socket.inet_pton(socket.AF_INET6, "2001:db8::25") + struct.pack("!HH", port, 25))
    return (b"\r\n\r\n\x00\r\nQUIT\n" + struct.pack("!BBH", 0x21, 0x21, len(addresses))
            + addresses)


def send(client: RawClient, recipient: str) -> str:
    assert client.cmd("MAIL FROM:<alice@example.org>").startswith("250")
    reply = client.cmd(f"RCPT TO:<{recipient}>")
    if not reply.startswith("250"):
        assert client.cmd("RSET").startswith("250")
        return reply
    assert client.cmd("DATA").startswith("354")
    return client.cmd(BODY.removesuffix(b"\r\n"))


def test_proxy_protocol_headers_name_the_client_and_others_are_refused(make_kafka_settings):
    kafka = make_kafka_settings()
    # Given ingest behind a balancer at 127.0.0.1, relaying for 192.0.2.0/24, one session a client
    with Ingest(kafka, proxy_protocol=True, proxy_protocol_hosts=["127.0.0.1/32"],
                relay_networks=["192.0.2.0/24"], max_sessions_per_client=1,
                reverse_dns=False) as ingest:
        # When a v1 header names 192.0.2.7, which sends to a domain we do not relay for
        v1 = ProxiedClient(ingest.address, b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n")
        assert v1.greeting.startswith("220 ")
        assert v1.cmd("EHLO mx.example.org").startswith("250")
        # Then the relay check is that client's, and so are the event and the Received field
        assert send(v1, "carol@elsewhere.example").startswith("250 2.0.0 Ok: queued as")
        # And a second session for the same client is over its cap, another client's is not
        again = ProxiedClient(ingest.address, b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 25\r\n")
        assert again.greeting == "421 4.7.0 Too many connections from 192.0.2.7: limit 1"
        again.close()
        v2 = ProxiedClient(ingest.address, v2_tcp6("2001:db8::7", 40002))
        assert v2.greeting.startswith("220 ")
        assert v2.cmd("EHLO v6.example.org").startswith("250")
        assert send(v2, "carol@elsewhere.example").startswith("550 5.7.1 Relaying denied: "
                                                               "elsewhere.example is not a relay "
                                                               "domain and client 2001:db8::7")
        assert send(v2, "bob@example.net").startswith("250 2.0.0")
        v1.close()
        v2.close()

        # When a peer not in proxy_protocol_hosts sends a header, or a balancer a broken one
        untrusted = socket.create_connection(ingest.address, 10, source_address=("127.0.0.2", 0))
        untrusted.sendall(b"PROXY TCP4 192.0.2.8 127.0.0.1 40003 25\r\n")
        malformed = socket.create_connection(ingest.address, 10)
        malformed.sendall(b"PROXY TCP4 192.0.2.300 127.0.0.1 40004 25\r\n")
        # Then each is refused, named, and closed
        assert untrusted.recv(4096) == (
            b"421 4.7.0 PROXY protocol header not accepted from 127.0.0.2: not in "
            b"proxy_protocol_hosts, closing connection\r\n")
        assert malformed.recv(4096) == (
            b"421 4.5.2 Malformed PROXY protocol header (PROXYv1 address malformed), closing "
            b"connection\r\n")
        assert untrusted.recv(4096) == malformed.recv(4096) == b""
        untrusted.close()
        malformed.close()

    # (the two messages are on partitions of their own ids: read back in either order)
    events = sorted(received(kafka), key=lambda e: e.helo)
    assert [(str(e.client_ip), e.helo) for e in events] == [
        ("192.0.2.7", "mx.example.org"), ("2001:db8::7", "v6.example.org")]
    assert raw_of(kafka, events[0]).startswith(
        b"Received: from mx.example.org (unknown [192.0.2.7])\r\n")


def test_after_starttls_the_client_is_still_the_one_the_header_named(make_kafka_settings,
                                                                    tmp_path):
    kafka = make_kafka_settings()
    cert, key = self_signed(tmp_path)
    # Given ingest with STARTTLS behind a balancer at 127.0.0.1, relaying for 192.0.2.0/24, one
    # session a client
    with Ingest(kafka, proxy_protocol=True, proxy_protocol_hosts=["127.0.0.1/32"],
                relay_networks=["192.0.2.0/24"], max_sessions_per_client=1, tls_cert=cert,
                tls_key=key, reverse_dns=False) as ingest:
        for port in (40000, 40001):
            # When a client the header names as 192.0.2.7 starts TLS, as most MTAs do
            client = ProxiedClient(ingest.address,
                                   f"PROXY TCP4 192.0.2.7 127.0.0.1 {port} 25\r\n".encode())
            assert client.greeting.startswith("220 "), port
            assert client.cmd("EHLO mx.example.org").startswith("250")
            assert client.cmd("STARTTLS").startswith("220")
            client.sock = client_tls_context().wrap_socket(client.sock, server_hostname="mx.test")
            assert client.cmd("EHLO mx.example.org").startswith("250")
            # Then the relay check is still that client's, not the balancer's
            assert send(client, "carol@elsewhere.example").startswith("250 2.0.0 Ok: queued"), \
                port
            assert client.cmd("QUIT").startswith("221")
            assert client.closed()
            client.close()
            # And its session is counted once, and released: the next one is welcome
    events = received(kafka)
    assert [(str(e.client_ip), e.tls) for e in events] == [("192.0.2.7", True)] * 2
    assert raw_of(kafka, events[0]).startswith(
        b"Received: from mx.example.org (unknown [192.0.2.7])\r\n")


def test_a_postfix_s_cached_connection_is_not_cut_by_the_command_limit(make_kafka_settings):
    kafka = make_kafka_settings()
    # Given ingest taking XFORWARD from a Postfix, with the smallest command limit
    with Ingest(kafka, xforward_hosts=["127.0.0.1/32"], max_commands=10,
                reverse_dns=False) as ingest:
        postfix = RawClient(ingest.address)
        assert postfix.cmd("EHLO postfix.test").startswith("250")
        # When it hands on more messages over its cached connection than the limit allows
        # counted commands in all, as Postfix does: RSET (is the session usable?), XFORWARD twice
        for i in range(5):
            assert postfix.cmd("RSET") == "250 2.0.0 Ok", i
            assert postfix.cmd(f"XFORWARD NAME=[UNAVAILABLE] ADDR=198.51.100.{i}") == \
                "250 2.0.0 Ok", i
            assert postfix.cmd("XFORWARD PROTO=ESMTP HELO=mx.example.org") == "250 2.0.0 Ok", i
            # Then each is taken: the limit counts afresh after a message, as Postfix's does
            assert send(postfix, "bob@example.net").startswith("250 2.0.0 Ok: queued as"), i
        postfix.close()
    assert len(received(kafka)) == 5


def test_a_peer_that_is_no_balancer_cannot_take_the_balancers_session_slots(make_kafka_settings):
    kafka = make_kafka_settings()
    # Given ingest behind a balancer at 127.0.0.2, with room for two sessions, one a client
    with Ingest(kafka, proxy_protocol=True, proxy_protocol_hosts=["127.0.0.2/32"],
                max_sessions=2, max_sessions_per_client=1, reverse_dns=False) as ingest:
        # When another peer opens two connections and sends nothing
        held = [socket.create_connection(ingest.address, 10, source_address=("127.0.0.1", 0))
                for _ in range(2)]
        # And the balancer then brings a client
        client = ProxiedClient(ingest.address, b"PROXY TCP4 192.0.2.7 127.0.0.2 40000 25\r\n",
                               source="127.0.0.2")
        # Then the client is greeted: the peer had one session, under its own address
        assert client.greeting.startswith("220 ")
        assert held[0].recv(4096).startswith(b"421 4.7.0 PROXY protocol header not accepted")
        assert held[1].recv(4096) == b"421 4.7.0 Too many connections from 127.0.0.1: limit 1\r\n"
        client.close()
        for sock in held:
            sock.close()


def test_xforward_from_a_trusted_postfix_names_the_message_s_client(make_kafka_settings):
    kafka = make_kafka_settings()
    # Given ingest taking XFORWARD from two Postfixes, relaying for 198.51.100.0/24 and for
    # the Postfix at 127.0.0.3 (which has decided relaying: its mynetworks, its SASL users)
    with Ingest(kafka, xforward_hosts=["127.0.0.1/32", "127.0.0.3/32"],
                relay_networks=["198.51.100.0/24", "127.0.0.3/32"],
                reverse_dns=False) as ingest:
        postfix = RawClient(ingest.address)
        assert "250-XFORWARD NAME ADDR PROTO HELO SOURCE" in postfix.cmd("EHLO postfix.test")
        # When it names the client it received the message from, in two commands as Postfix does
        assert postfix.cmd("XFORWARD NAME=mail.example.org ADDR=198.51.100.7") == "250 2.0.0 Ok"
        assert postfix.cmd("XFORWARD PROTO=ESMTP HELO=mx.example.org SOURCE=REMOTE") == \
            "250 2.0.0 Ok"
        # Then naming a client in relay_networks does not let it relay: that is decided on the
        # connection (127.0.0.1), as Postfix does, or any process there could relay through us
        assert send(postfix, "carol@elsewhere.example").startswith(
            "550 5.7.1 Relaying denied: elsewhere.example is not a relay domain and client "
            "127.0.0.1")
        assert postfix.cmd("XFORWARD NAME=mail.example.org ADDR=198.51.100.7") == "250 2.0.0 Ok"
        assert postfix.cmd("XFORWARD PROTO=ESMTP HELO=mx.example.org SOURCE=REMOTE") == \
            "250 2.0.0 Ok"
        assert send(postfix, "bob@example.net").startswith("250 2.0.0 Ok: queued as")
        # And a bad attribute or one sent inside a transaction is refused, naming why
        assert postfix.cmd("XFORWARD PORT=25") == "501 5.5.4 Bad XFORWARD attribute name: PORT"
        assert postfix.cmd("MAIL FROM:<alice@example.org>").startswith("250")
        assert postfix.cmd("XFORWARD ADDR=198.51.100.8") == \
            "503 5.5.1 Error: MAIL transaction in progress"
        postfix.close()

        # When the Postfix in relay_networks hands on a SASL user's message from anywhere
        relaying = ProxiedClient(ingest.address, b"", source="127.0.0.3")
        assert relaying.cmd("EHLO postfix2.test").startswith("250")
        assert relaying.cmd("XFORWARD ADDR=203.0.113.9 PROTO=ESMTPSA") == "250 2.0.0 Ok"
        # Then it is relayed, and named by the client XFORWARD gave
        assert send(relaying, "carol@elsewhere.example").startswith("250 2.0.0 Ok: queued as")
        relaying.close()

        # When another client tries it
        other = ProxiedClient(ingest.address, b"", source="127.0.0.2")
        # Then it is neither offered nor taken
        assert "XFORWARD" not in other.cmd("EHLO other.test")
        assert other.cmd("XFORWARD ADDR=198.51.100.9") == \
            "550 5.7.0 Error: insufficient authorization"
        assert send(other, "carol@elsewhere.example").startswith("550 5.7.1 Relaying denied")
        other.close()

    events = {str(e.client_ip): e for e in received(kafka)}  # in any order (partitions)
    first, sasl = events["198.51.100.7"], events["203.0.113.9"]
    assert (len(events), first.helo, sasl.helo) == (2, "mx.example.org", "")
    assert raw_of(kafka, first).startswith(
        b"Received: from mx.example.org (mail.example.org [198.51.100.7])\r\n"
        b"\tby mx.test with ESMTP id ")
    assert b"\tby mx.test with ESMTPSA id " in raw_of(kafka, sasl)
