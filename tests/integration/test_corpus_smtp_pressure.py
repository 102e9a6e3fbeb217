"""The SMTP corpus's pressure cases (tests/corpus/smtp/pressure.json, described in its README)
against `katagate ingest run` as its own process on the real broker: 1,000 idle connections and
a client sending one byte a second, each with its specific 421, bounded memory and a gateway
that keeps serving everyone else."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_ingest_harness import IngestProcess, RawClient, first_line, received

pytestmark = pytest.mark.kafka

CASES: dict[str, dict[str, Any]] = {
    case["name"]: case for case in json.loads(
        (Path(__file__).resolve().parents[1] / "corpus" / "smtp" / "pressure.json").read_text()
    )["cases"]}


def connect_from(source: str, address: tuple[str, int]) -> socket.socket:
    # All of 127.0.0.0/8 is loopback on Linux: each source address is another client.
    return socket.create_connection(address, timeout=10, source_address=(source, 0))


def lines_until_closed(sock: socket.socket, timeout: float) -> list[bytes]:
    """Every line the server sends until it closes the connection (or `timeout` passes)."""
    data = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            return data.split(b"\r\n")[:-1]
        data += chunk
    raise AssertionError(f"not closed within {timeout} s; got {data!r}")


def test_thousand_idle_connections(make_kafka_settings, tmp_path):
    case = CASES["thousand_idle_connections"]
    began = time.monotonic()
    with IngestProcess(make_kafka_settings(), tmp_path / "ingest.log",
                       **case["settings"]) as ingest:
        # A first session, so that what is measured is the cost of the idle ones
        with socket.create_connection(ingest.address, timeout=10) as warm:
            assert first_line(warm).startswith(b"220 ")
        before = ingest.rss_mb()
        idle: list[socket.socket] = []
        try:
            # Given 1,000 connections that never send a command
            for n in range(case["clients"]):
                for _ in range(case["sessions_per_client"]):
                    idle.append(connect_from(f"127.0.1.{n + 1}", ingest.address))
            for sock in idle:
                assert first_line(sock).startswith(b"220 ")
            grown = ingest.rss_mb() - before
            print(f"ingest RSS {before:.1f} MB, +{grown:.1f} MB with 1,000 idle sessions")
            # When one more comes from a client at its limit, and one from a new client
            with connect_from("127.0.1.1", ingest.address) as extra:
                over_client = lines_until_closed(extra, 5)
            with connect_from("127.0.2.1", ingest.address) as extra:
                over_all = lines_until_closed(extra, 5)
            # Then each gets its 421 4.7.0 and is closed
            assert over_client == [
                case["expect_over_client_limit"].format(client="127.0.1.1").encode()]
            assert over_all == [case["expect_over_limit"].encode()]
            # And the idle ones are closed at the idle timeout, each with its 421 4.4.2
            timeout = case["settings"]["session_timeout_s"]
            for sock in idle:
                assert lines_until_closed(sock, timeout + 10) == [case["expect_idle"].encode()]
            # With memory bounded: well under 100 KB a session
            assert grown < case["max_rss_growth_mb"], f"+{grown:.1f} MB for 1,000 idle sessions"
            # And the gateway greets the next client
            with socket.create_connection(ingest.address, timeout=10) as newcomer:
                assert first_line(newcomer).startswith(b"220 ")
        finally:
            for sock in idle:
                sock.close()
    assert time.monotonic() - began < case["within"]


def test_one_byte_a_second(make_kafka_settings, tmp_path):
    case = CASES["one_byte_a_second"]
    kafka = make_kafka_settings()
    began = time.monotonic()
    with IngestProcess(kafka, tmp_path / "ingest.log", **case["settings"]) as ingest:
        # Given a client in DATA
        slow = RawClient(ingest.address)
        slow.envelope()
        slow.send(b"Subject: slow\r\n")
        started = time.monotonic()
        # When it sends one byte a second, while another client sends mail
        other = RawClient(ingest.address)
        other.envelope()
        other.send(b"Subject: meanwhile\r\n\r\nhello\r\n")
        assert other.cmd(".").startswith("250 2.0.0 Ok: queued as")
        other.close()
        slow.sock.settimeout(case["byte_every_s"])
        reply = b""
        while b"\r\n" not in reply and time.monotonic() - started < case["within"]:
            try:
                slow.sock.sendall(b"x")
                reply += slow.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
        cut_after = time.monotonic() - started
        # Then it is cut at the DATA deadline with its 421 4.4.2, and closed
        assert reply.split(b"\r\n", 1)[0] == case["expect"].encode()
        low, high = case["cut_between_s"]
        assert low < cut_after < high, cut_after
        assert slow.closed()
        slow.close()
    # And nothing of it was accepted; the other client's message was
    assert [e.subject for e in received(kafka)] == ["meanwhile"]
    assert time.monotonic() - began < case["within"]
