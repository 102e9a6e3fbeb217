"""Recipient verification on real sockets and the real broker: a next-hop SMTP server (the demo
sink) that knows only some recipients; unknown ones are refused at RCPT, never accepted and
bounced later; a next hop that cannot be asked gives 450 4.1.1."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from katagate.demo_sink.server import Faults, SinkServer
from katagate.demo_sink.store import read_messages
from tests.integration.test_ingest_harness import Ingest, received, self_signed

pytestmark = pytest.mark.kafka

GHOSTS = Faults(reject_rcpt=("ghost*@example.net",))  # the next hop knows everyone else


def rcpt_replies(address: tuple[str, int], recipients: list[str],
                 data: bytes | None = None) -> list[str]:
    """One session: each RCPT's reply, then DATA's if `data` is given."""
    with smtplib.SMTP(*address, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("alice@example.org")
        out = [f"{code} {text.decode()}" for code, text in map(client.rcpt, recipients)]
        if data is not None:
            code, text = client.data(data)
            out.append(f"{code} {text.decode()}")
    return out


def unknown(recipient: str, detail: str = "RCPT answered 550") -> str:
    return (f"550 5.1.1 <{recipient}>: Recipient address rejected: undeliverable address: "
            f"the next hop does not know it ({detail})")


def unverified(recipient: str, detail: str) -> str:
    return (f"450 4.1.1 <{recipient}>: Recipient address rejected: unverified address: the "
            f"next hop could not be asked ({detail}); try again later")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_given_a_next_hop_that_knows_only_some_recipients_then_unknown_ones_get_550_at_rcpt(
        kafka_settings, tmp_path: Path):
    # Given a next hop that refuses ghost*@example.net, when a sender names bob and a ghost,
    # then the ghost gets 550 5.1.1 at RCPT, bob is accepted, and the message is queued for
    # bob alone; the probes left nothing at the next hop (they stop at RCPT).
    with SinkServer(tmp_path / "sink", faults=GHOSTS) as sink, \
            Ingest(kafka_settings, verify_recipients=True, verify_port=sink.port) as ingest:
        got = rcpt_replies(ingest.address, ["bob@example.net", "ghost1@example.net"],
                           b"Subject: s\r\n\r\nx\r\n")
    assert got[:2] == ["250 2.1.5 Recipient ok", unknown("ghost1@example.net")]
    assert got[2].startswith("250 2.0.0 Ok: queued as ")
    assert [e.envelope_to for e in received(kafka_settings)] == [["bob@example.net"]]
    assert list(read_messages(tmp_path / "sink")) == []


def test_given_answers_remembered_then_a_refusal_is_forgotten_first_and_no_answer_is_450(
        kafka_settings, tmp_path: Path):
    # Given answers for bob (yes) and a ghost (no), remembered 60 s and 1 s, when the next hop
    # goes away, then both are answered from memory, a new recipient gets 450 4.1.1; after 1 s
    # the ghost is asked again (450: nobody answers) while bob is still remembered.
    with Ingest(kafka_settings, verify_recipients=True, verify_port=free_port(),
                verify_positive_ttl_s=60, verify_negative_ttl_s=1) as ingest:
        # The port is free: the sink takes it, and leaves it closed when stopped.
        with SinkServer(tmp_path / "sink", port=ingest.settings.verify_port,
                        faults=GHOSTS):
            first = rcpt_replies(ingest.address, ["bob@example.net", "ghost2@example.net"])
        assert first == ["250 2.1.5 Recipient ok", unknown("ghost2@example.net")]
        remembered = rcpt_replies(ingest.address, ["BOB@example.net", "ghost2@example.net",
                                                   "carol@example.net"])
        assert remembered == ["250 2.1.5 Recipient ok",
                              unknown("ghost2@example.net", "remembered"),
                              unverified("carol@example.net", "connection refused")]
        time.sleep(1.2)
        later = rcpt_replies(ingest.address, ["bob@example.net", "ghost2@example.net"])
        assert later == ["250 2.1.5 Recipient ok",
                         unverified("ghost2@example.net", "connection refused")]
    assert received(kafka_settings) == []


def test_given_a_next_hop_that_never_answers_then_450_4_1_1_within_the_timeout(kafka_settings):
    # Given a next hop that accepts the connection and says nothing, when a recipient comes,
    # then 450 4.1.1 after verify_timeout_s, and the sender may retry.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with Ingest(kafka_settings, verify_recipients=True, verify_timeout_s=1,
                    verify_port=silent.getsockname()[1]) as ingest:
            started = time.monotonic()
            got = rcpt_replies(ingest.address, ["bob@example.net"])
            took = time.monotonic() - started
    assert got == [unverified("bob@example.net", "no answer within 1 s")]
    assert 1.0 <= took < 5.0


def test_given_a_relay_recipient_table_then_unlisted_recipients_get_550_without_a_probe(
        kafka_settings, tmp_path: Path):
    # Given a table file naming bob@example.net, a second relay domain with no entry, and a
    # next hop that would take anyone, when a sender names bob, dave (unlisted) and someone of
    # the unlisted domain, then dave gets 550 5.1.1 from the table, the others are accepted.
    table = tmp_path / "relay_recipients"
    table.write_text("# who exists\nbob@example.net\n")
    with SinkServer(tmp_path / "sink") as sink, \
            Ingest(kafka_settings, relay_domains=["example.net", "example.com"],
                   relay_recipients_file=table, verify_recipients=True,
                   verify_port=sink.port) as ingest:
        got = rcpt_replies(ingest.address, ["bob@example.net", "dave@example.net",
                                            "anyone@example.com"], b"Subject: s\r\n\r\nx\r\n")
    assert got[:3] == [
        "250 2.1.5 Recipient ok",
        "550 5.1.1 <dave@example.net>: Recipient address rejected: User unknown in relay "
        "recipient table",
        "250 2.1.5 Recipient ok"]
    assert [e.envelope_to for e in received(kafka_settings)] == [
        ["bob@example.net", "anyone@example.com"]]


def test_given_a_relay_network_client_then_other_domains_are_not_verified(kafka_settings):
    # Given verification on and no next hop listening, when a relay network's client writes
    # to a domain that is not a relay domain, then no probe is made: 250.
    with Ingest(kafka_settings, relay_networks=["127.0.0.0/8"], verify_recipients=True,
                verify_port=free_port()) as ingest:
        got = rcpt_replies(ingest.address, ["someone@elsewhere.test", "bob@example.net"])
    assert got == ["250 2.1.5 Recipient ok", unverified("bob@example.net", "connection refused")]


def test_given_concurrent_rcpts_of_one_address_then_one_probe_answers_them_all(kafka_settings):
    # Given a silent next hop that counts its connections, when five sessions name bob at
    # once, then one probe is made, and each session gets its 450 4.1.1 from it.
    connections: list[socket.socket] = []
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        silent.settimeout(0.1)

        def accept_all(stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    connections.append(silent.accept()[0])
                except TimeoutError:
                    continue

        stop = threading.Event()
        counter = threading.Thread(target=accept_all, args=(stop,))
        counter.start()
        try:
            with Ingest(kafka_settings, verify_recipients=True, verify_timeout_s=2,
                        verify_port=silent.getsockname()[1]) as ingest, \
                    ThreadPoolExecutor(5) as pool:
                got = list(pool.map(lambda _: rcpt_replies(ingest.address, ["bob@example.net"]),
                                    range(5)))
        finally:
            stop.set()
            counter.join()
            for connection in connections:
                connection.close()
    assert got == [[unverified("bob@example.net", "no answer within 2 s")]] * 5
    assert len(connections) == 1


@pytest.mark.parametrize(("script", "detail"), [
    (b"hello, not SMTP\r\n", "the next hop's answer was broken"),
    (b"554 5.3.2 go away\r\n", "greeting 554"),
    (b"220 hop\r\n" + b"250-" + b"x" * 8000 + b"\r\n", "the next hop's answer was broken"),
])
def test_given_a_next_hop_that_does_not_speak_smtp_then_450_4_1_1_naming_why(
        kafka_settings, script, detail):
    # Given a next hop that greets with garbage, refuses the session, or answers EHLO with a
    # line over the read limit, when a recipient comes, then 450 4.1.1 says why.
    with socket.socket() as hop:
        hop.bind(("127.0.0.1", 0))
        hop.listen(8)

        def answer() -> None:
            connection, _ = hop.accept()
            with connection:
                connection.sendall(script.split(b"\r\n", 1)[0] + b"\r\n")
                rest = script.split(b"\r\n", 1)[1]
                if rest:
                    connection.recv(1024)  # the EHLO
                    connection.sendall(rest)
                connection.recv(1024)

        server = threading.Thread(target=answer)
        server.start()
        with Ingest(kafka_settings, verify_recipients=True,
                    verify_port=hop.getsockname()[1]) as ingest:
            got = rcpt_replies(ingest.address, ["bob@example.net"])
        server.join(10)
    assert got == [unverified("bob@example.net", detail)]


class TlsHop:
    """An aiosmtpd next hop that requires STARTTLS, knows only bob@example.net, and records
    whether each RCPT came over TLS."""

    def __init__(self) -> None:
        self.rcpts: list[tuple[str, bool]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        self.rcpts.append((address, session.ssl is not None))
        if address != "bob@example.net":
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


@pytest.mark.parametrize("starttls", ["opportunistic", "required"])
def test_given_a_next_hop_offering_starttls_then_the_probe_is_encrypted(
        kafka_settings, tmp_path: Path, starttls):
    # Given a next hop that offers (and requires) STARTTLS, when recipients are verified, then
    # every probe's RCPT came over TLS, and the answers are its own.
    cert, key = self_signed(tmp_path, "hop.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    hop = TlsHop()
    controller = Controller(hop, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True)
    controller.start()
    try:
        with Ingest(kafka_settings, verify_recipients=True, verify_starttls=starttls,
                    verify_port=controller.port) as ingest:
            got = rcpt_replies(ingest.address, ["bob@example.net", "ghost@example.net"])
    finally:
        controller.stop()
    assert got == ["250 2.1.5 Recipient ok", unknown("ghost@example.net")]
    assert hop.rcpts == [("bob@example.net", True), ("ghost@example.net", True)]


def test_given_starttls_required_and_a_next_hop_without_it_then_450_and_no_plaintext_probe(
        kafka_settings, tmp_path: Path):
    # Given verify_starttls required and a next hop (the demo sink) that offers no STARTTLS,
    # when a recipient comes, then 450 4.1.1 says so, and no RCPT went out in plaintext.
    with SinkServer(tmp_path / "sink") as sink, \
            Ingest(kafka_settings, verify_recipients=True, verify_starttls="required",
                   verify_port=sink.port) as ingest:
        got = rcpt_replies(ingest.address, ["bob@example.net"])
    assert got == [unverified("bob@example.net",
                              "TLS is required, but STARTTLS was not offered")]
