"""The PROXY protocol header's policy, pure over aiosmtpd's parser: who may send one, which
client it names (v1, v2, LOCAL, UNKNOWN), and the refusals; and the session caps counting a
session by the client its header names."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

import pytest

from katagate.ingest.proxy import read_header
from katagate.ingest.sessions import SessionTable
from katagate.ingest.settings import IngestSettings

BALANCERS = (ipaddress.ip_network("10.0.0.0/24"),)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, addresses: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(addresses)) + addresses


def v2_tcp6(source: str, port: int) -> bytes:
    body = (socket.inet_pton(socket.AF_INET6, source)
            + socket.inet_pton(socket.AF_INET6, "2001:db8::25") + struct.pack("!HH", port, 25))
    return v2(1, 0x21, body)


def read(header: bytes, peer: str = "10.0.0.5", *, eof: bool = False, timeout: float = 5,
         then: bytes = b"EHLO mx.example.org\r\n"):
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(header + then)
        if eof:
            reader.feed_eof()
        return await read_header(reader, peer, BALANCERS, timeout)
    return asyncio.run(go())


def test_a_v1_header_from_a_balancer_names_the_client():
    outcome = read(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\r\n")
    assert (outcome.client, outcome.port, outcome.refusal) == ("192.0.2.7", 40000, None)


def test_a_v2_header_from_a_balancer_names_an_ipv6_client():
    outcome = read(v2_tcp6("2001:db8::7", 40001))
    assert (outcome.client, outcome.port, outcome.refusal) == ("2001:db8::7", 40001, None)


def test_a_v2_local_header_is_the_balancer_itself_and_v1_unknown_too():
    # The balancer's own health check: the connection's own address, as the spec says
    assert read(v2(0, 0x00, b"")).client == "10.0.0.5"
    assert read(b"PROXY UNKNOWN\r\n").client == "10.0.0.5"


def test_a_header_from_a_peer_not_in_proxy_protocol_hosts_is_refused_unread():
    outcome = read(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\r\n", peer="192.0.2.99")
    assert outcome.client is None
    assert str(outcome.refusal) == (
        "421 4.7.0 PROXY protocol header not accepted from 192.0.2.99: not in "
        "proxy_protocol_hosts, closing connection")


@pytest.mark.parametrize(("header", "why"), [
    (b"PROXY TCP4 192.0.2.300 10.0.0.1 40000 25\r\n", "PROXYv1 address malformed"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 40000\r\n", "PROXY exception"),
    (b"PROXY TCP5 192.0.2.7 10.0.0.1 40000 25\r\n", "PROXYv1 unrecognized family"),
    (b"EHLO mx.example.org\r\n", "PROXY unrecognized signature"),
    (V2_SIGNATURE + b"\x31\x11\x00\x00", "PROXYv2 illegal version"),
])
def test_a_malformed_header_is_refused_naming_the_fault(header, why):
    outcome = read(header)
    assert outcome.client is None
    assert str(outcome.refusal).startswith(f"421 4.5.2 Malformed PROXY protocol header ({why}")


def test_no_header_in_time_is_refused_and_a_peer_gone_gets_no_reply():
    outcome = read(b"PRO", timeout=0.2, then=b"")
    assert str(outcome.refusal) == ("421 4.4.2 No PROXY protocol header within 0.2 s, closing "
                                    "connection")
    gone = read(b"PR", eof=True, then=b"")
    assert (gone.client, gone.refusal) == (None, None)


def test_a_session_counted_before_its_header_is_counted_for_the_client_it_names():
    # Given one session per client, and two sessions from the balancer not yet identified
    table = SessionTable(max_sessions=10, max_per_client=1)
    assert table.admit(None) is None
    assert table.admit(None) is None
    # When their headers name the same client
    assert table.identify("192.0.2.7") is None
    refusal = table.identify("192.0.2.7")
    # Then the second is refused for that client, and no longer counted
    assert str(refusal) == "421 4.7.0 Too many connections from 192.0.2.7: limit 1"
    assert table.total == 1
    table.release("192.0.2.7")
    assert table.total == 0


def test_proxy_protocol_is_off_by_default_and_needs_the_balancers_networks():
    assert IngestSettings().proxy_protocol is False
    with pytest.raises(ValueError, match="proxy_protocol needs proxy_protocol_hosts"):
        IngestSettings(proxy_protocol=True)
    assert IngestSettings(proxy_protocol=True, proxy_protocol_hosts=["10.0.0.0/24"])


@pytest.mark.parametrize("setting", ["relay_networks", "proxy_protocol_hosts", "xforward_hosts"])
def test_an_ipv4_mapped_network_is_refused_naming_its_ipv4_form(setting):
    # Given a network written IPv4-mapped: clients are compared as IPv4, so it matches none
    with pytest.raises(ValueError, match=rf"{setting}\n.*::ffff:a00:0/104 is IPv4-mapped: .*"
                                         r"write 10\.0\.0\.0/8"):
        IngestSettings(**{setting: ["::ffff:10.0.0.0/104"]})
    assert IngestSettings(**{setting: ["10.0.0.0/8"]})


@pytest.mark.parametrize("setting", ["proxy_protocol_hosts", "xforward_hosts"])
@pytest.mark.parametrize("everyone", ["0.0.0.0/0", "::/0"])
def test_trusting_every_address_to_name_a_client_is_refused(setting, everyone):
    with pytest.raises(ValueError, match=rf"{setting}\n.*{everyone} would let any peer name any "
                                         "client"):
        IngestSettings(**{setting: ["127.0.0.1/32", everyone]})
