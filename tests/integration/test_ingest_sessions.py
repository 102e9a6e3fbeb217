"""Slow and idle clients on real sockets: a session that sends one byte a second, a session
that says nothing, and 1,000 idle connections, against ingest on the real broker. Each ends
with a specific 421 and leaves the gateway answering everyone else."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.integration.test_ingest_harness import (
    Ingest,
    RawClient,
    first_line,
    read_until,
    received,
)

pytestmark = pytest.mark.kafka


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def connect_from(source: str, address: tuple[str, int]) -> socket.socket:
    # All of 127.0.0.0/8 is loopback on Linux: each source address is another client.
    sock = socket.create_connection(address, timeout=10, source_address=(source, 0))
    return sock


def test_an_ipv6_client_is_counted_by_its_64_on_a_real_socket(make_kafka_settings):
    # Given ingest on ::1 with 2 sessions per client
    with Ingest(make_kafka_settings(), host="::1", max_sessions_per_client=2) as ingest:
        held = [socket.create_connection(ingest.address, timeout=10) for _ in range(2)]
        try:
            for sock in held:
                assert first_line(sock).startswith(b"220 ")
            # When the client connects a third time
            with socket.create_connection(ingest.address, timeout=10) as extra:
                # Then the refusal names its /64, the unit the cap counts
                assert first_line(extra) == b"421 4.7.0 Too many connections from ::/64: limit 2"
        finally:
            for sock in held:
                sock.close()


def test_a_client_sending_one_byte_a_second_is_cut_off_with_421(make_kafka_settings):
    kafka = make_kafka_settings()
    with Ingest(kafka, data_timeout_s=2.0, min_data_rate=500) as ingest:
        client = RawClient(ingest.address)
        client.envelope()
        began = time.monotonic()
        client.sock.settimeout(0.2)
        reply = b""
        while time.monotonic() - began < 10 and b"\r\n" not in reply:
            try:
                client.sock.sendall(b"X")
                reply += client.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
        waited = time.monotonic() - began
        assert reply.startswith(b"421 4.4.2 DATA too slow: under 500 octets/s"), reply
        assert 1.5 < waited < 4, waited
        assert client.closed()
        client.close()
        assert received(kafka) == []


def test_a_client_over_the_minimum_rate_keeps_its_session_past_the_timeout(make_kafka_settings):
    kafka = make_kafka_settings()
    with Ingest(kafka, data_timeout_s=1.0, min_data_rate=500) as ingest:
        client = RawClient(ingest.address)
        client.envelope()
        client.send(b"Subject: slow but steady\r\n\r\n")
        began = time.monotonic()
        while time.monotonic() - began < 2.5:  # 1,000 octets/s, for over twice the timeout
            client.send(b"y" * 198 + b"\r\n")
            time.sleep(0.2)
        assert client.cmd(".").startswith("250 2.0.0 Ok: queued as")
        client.close()
        assert len(received(kafka)) == 1


def test_an_idle_session_is_closed_with_421_after_the_session_timeout(make_kafka_settings):
    with Ingest(make_kafka_settings(), session_timeout_s=1.0) as ingest:
        client = RawClient(ingest.address)
        assert client.cmd("EHLO client.test").startswith("250")
        began = time.monotonic()
        assert client.reply() == "421 4.4.2 Timeout exceeded: idle for 1 s, closing connection"
        assert 0.8 < time.monotonic() - began < 3
        assert client.closed()
        client.close()


def test_a_thousand_idle_connections_take_no_slot_from_other_clients(make_kafka_settings):
    kafka = make_kafka_settings()
    with Ingest(kafka) as ingest:  # the defaults: 1,000 sessions, 50 per client
        before = rss_mb()
        idle: dict[str, list[socket.socket]] = {}
        try:
            for n in range(20):
                source = f"127.0.1.{n + 1}"
                idle[source] = [connect_from(source, ingest.address) for _ in range(50)]
            for socks in idle.values():
                for sock in socks:
                    assert first_line(sock).startswith(b"220 ")
            grown = rss_mb() - before
            # One client cannot take a 51st slot ...
            with connect_from("127.0.1.1", ingest.address) as extra:
                assert first_line(extra) == (b"421 4.7.0 Too many connections from 127.0.1.1: "
                                             b"limit 50")
            # ... and nobody gets a 1,001st, with a reply that says so.
            with connect_from("127.0.2.1", ingest.address) as extra:
                assert first_line(extra) == b"421 4.7.0 Too many connections, try again later"
            # A slot freed is a slot for the next client, who sends mail as usual.
            for sock in idle.pop("127.0.1.1"):
                sock.close()
            deadline = time.monotonic() + 10
            while True:
                sock = connect_from("127.0.2.1", ingest.address)
                greeting = first_line(sock)
                if greeting.startswith(b"220 ") or time.monotonic() > deadline:
                    break
                sock.close()
                time.sleep(0.1)
            assert greeting.startswith(b"220 "), greeting
            sock.sendall(b"EHLO newcomer.test\r\nMAIL FROM:<a@example.org>\r\n"
                         b"RCPT TO:<b@example.net>\r\nDATA\r\n")
            sock.sendall(b"Subject: after the flood\r\n\r\nhello\r\n.\r\nQUIT\r\n")
            sock.settimeout(10)
            answer = read_until(sock, b"221")
            sock.close()
            assert b"250 2.0.0 Ok: queued as" in answer, answer
            assert len(received(kafka)) == 1
            # 1,000 idle sessions cost memory, but bounded: well under 100 KB each.
            assert grown < 100, f"{grown:.1f} MB for 1,000 idle sessions"
            print(f"1,000 idle sessions: +{grown:.1f} MB")
        finally:
            for socks in idle.values():
                for sock in socks:
                    sock.close()
