"""Delivery to a real aiosmtpd next hop: bytes, replies, refusals, faults, STARTTLS, retries."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from katagate.decider.next_hop_tls import next_hop_tls
from katagate.decider.outcomes import next_retry
from katagate.decider.smtp_out import DeliveryOutcome, SessionCache, deliver

MESSAGE = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\n"
           b"first line\r\n.starts with a dot\r\n..two dots\r\n.\r\n \r\nlast line\r\n")


def _free_port() -> int:
    # aiosmtpd's threaded Controller cannot listen on port 0: pick a free port first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Received:
    mail_from: str | None
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    mail_options: list[str]
    peer: Any = None  # the client's (address, port): one per connection


@dataclass
class Handler:
    """A next hop whose replies the test chooses; it records what it received."""

    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued as TEST1"
    drop_after_data: bool = False
    received: list[Received] = field(default_factory=list)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or b"", session.ssl is not None,
                                      list(envelope.mail_options), session.peer))
        if self.drop_after_data and server.transport is not None:
            server.transport.abort()
        return self.data_reply


NextHop = Callable[..., tuple[Handler, int]]


@pytest.fixture
def next_hop() -> Iterator[NextHop]:
    controllers: list[Controller] = []

    def start(handler: Handler | None = None, **smtp_options: Any) -> tuple[Handler, int]:
        handler = handler or Handler()
        port = _free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
        controller.start()
        controllers.append(controller)
        return handler, port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for "mx.test"."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mx.test")]), False)
            .sign(key, hashes.SHA256()))
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def _deliver(port: int, **overrides: Any) -> DeliveryOutcome:
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "envelope_from": "a@example.org",
        "recipients": ["b@example.net"], "data": MESSAGE, "helo": "gw.example.org",
        "timeout_s": 5.0,
    }
    values.update(overrides)
    return deliver(**values)


# -- delivered ----------------------------------------------------------------------------------


def test_given_a_cache_then_deliveries_share_one_connection(next_hop):
    handler, port = next_hop()
    cache = SessionCache()
    outcomes = [_deliver(port, cache=cache, recipients=[f"r{i}@example.net"]) for i in range(3)]
    assert [o.kind for o in outcomes] == ["delivered"] * 3
    assert [r.rcpt_tos for r in handler.received] == [[f"r{i}@example.net"] for i in range(3)]
    assert len({r.peer for r in handler.received}) == 1
    assert cache.reused == 2
    assert [r.data for r in handler.received] == [MESSAGE] * 3


def test_given_a_cache_and_starttls_then_one_handshake_serves_every_message(next_hop, server_tls):
    handler, port = next_hop(tls_context=server_tls)
    cache = SessionCache()
    assert all(_deliver(port, cache=cache).tls for _ in range(3))
    assert len({r.peer for r in handler.received}) == 1
    assert all(r.tls for r in handler.received)


def test_given_a_kept_connection_the_next_hop_closed_then_a_new_one_delivers(next_hop):
    handler, port = next_hop(timeout=0.3)  # the next hop drops idle clients after 0.3 s
    cache = SessionCache(idle_s=30)
    assert _deliver(port, cache=cache).kind == "delivered"
    threading.Event().wait(1.0)
    assert _deliver(port, cache=cache).kind == "delivered"
    assert len({r.peer for r in handler.received}) == 2
    assert cache.reused == 0


def test_given_a_connection_idle_past_the_limit_then_it_is_closed_not_reused(next_hop):
    handler, port = next_hop()
    now = [0.0]
    cache = SessionCache(idle_s=2.0, clock=lambda: now[0])
    assert _deliver(port, cache=cache).kind == "delivered"
    assert len(cache) == 1
    now[0] = 2.5
    cache.sweep()
    assert len(cache) == 0
    assert _deliver(port, cache=cache).kind == "delivered"
    assert len({r.peer for r in handler.received}) == 2


def test_given_a_connection_older_than_the_reuse_limit_then_it_is_not_kept(next_hop):
    _handler, port = next_hop()
    now = [0.0]
    cache = SessionCache(idle_s=1000.0, max_age_s=300.0, clock=lambda: now[0])
    assert _deliver(port, cache=cache).kind == "delivered"
    now[0] = 100.0
    assert _deliver(port, cache=cache).kind == "delivered"
    assert len(cache) == 1
    now[0] = 300.0
    assert _deliver(port, cache=cache).kind == "delivered"
    assert len(cache) == 0


@pytest.mark.parametrize("handler", [Handler(data_reply="451 4.3.0 try later"),
                                     Handler(mail_reply="550 5.7.1 no")])
def test_given_a_delivery_that_did_not_succeed_then_its_connection_is_not_kept(
    next_hop, handler
):
    _handler, port = next_hop(handler)
    cache = SessionCache()
    assert _deliver(port, cache=cache).kind != "delivered"
    assert len(cache) == 0


def test_given_a_willing_next_hop_then_the_exact_bytes_arrive(next_hop):
    handler, port = next_hop()
    outcome = _deliver(port)
    assert outcome.kind == "delivered"
    assert outcome.reply == "250 2.0.0 Ok: queued as TEST1"
    assert outcome.code == 250
    assert outcome.delivered_to == ["b@example.net"]
    assert [r.data for r in handler.received] == [MESSAGE]
    assert handler.received[0].mail_from == "a@example.org"


def test_given_a_long_message_then_the_exact_bytes_arrive(next_hop):
    handler, port = next_hop()
    lines = [b"." * (i % 7) + b"line %d " % i + b"x" * (i % 900) for i in range(20_000)]
    data = b"Subject: long\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    outcome = _deliver(port, data=data)
    assert outcome.kind == "delivered"
    assert len(data) > 8_000_000
    assert handler.received[0].data == data
    assert f"SIZE={len(data)}" in handler.received[0].mail_options


@pytest.mark.parametrize("helo", ["gw_1.internal", "[127.0.0.1]"])
def test_given_a_machine_style_helo_then_it_is_used(next_hop, helo):
    _, port = next_hop()
    assert _deliver(port, helo=helo).kind == "delivered"


def test_given_a_helo_with_a_line_break_then_it_is_refused():
    with pytest.raises(ValueError, match="helo"):
        _deliver(_free_port(), helo="gw\r\nRSET")


def test_given_the_null_sender_then_mail_from_is_empty(next_hop):
    handler, port = next_hop()
    for sender in ("", "<>"):
        assert _deliver(port, envelope_from=sender).kind == "delivered"
    assert [r.mail_from for r in handler.received] == ["<>", "<>"]


def test_given_non_ascii_addresses_then_smtputf8_is_used(next_hop):
    handler, port = next_hop(enable_SMTPUTF8=True)  # the Controller's default, said aloud
    outcome = _deliver(port, envelope_from="jörg@exämple.org", recipients=["ñandú@example.net"])
    assert outcome.kind == "delivered"
    assert handler.received[0].rcpt_tos == ["ñandú@example.net"]
    assert "SMTPUTF8" in handler.received[0].mail_options


def test_given_non_ascii_addresses_and_no_smtputf8_then_failed(next_hop):
    handler, port = next_hop(enable_SMTPUTF8=False)
    outcome = _deliver(port, recipients=["ñandú@example.net"])
    assert outcome.kind == "failed"
    assert "SMTPUTF8" in outcome.reply
    assert handler.received == []


# -- refusals -----------------------------------------------------------------------------------


def test_given_a_4xx_after_the_data_then_deferred(next_hop):
    _, port = next_hop(Handler(data_reply="451 4.3.0 try again later"))
    outcome = _deliver(port, recipients=["b@example.net", "c@example.net"])
    assert (outcome.kind, outcome.code, outcome.reply) == (
        "deferred", 451, "451 4.3.0 try again later")
    assert [(r.recipient, r.code) for r in outcome.recipients] == [
        ("b@example.net", 250), ("c@example.net", 250)]
    assert outcome.delivered_to == []


def test_given_a_5xx_after_the_data_then_failed(next_hop):
    _, port = next_hop(Handler(data_reply="554 5.7.1 message content rejected"))
    outcome = _deliver(port)
    assert (outcome.kind, outcome.code) == ("failed", 554)
    assert outcome.reply == "554 5.7.1 message content rejected"
    assert outcome.delivered_to == []


def test_given_some_recipients_refused_then_delivered_to_the_others(next_hop):
    handler, port = next_hop(Handler(rcpt_replies={
        "gone@example.net": "550 5.1.1 no such user",
        "full@example.net": "452 4.2.2 mailbox full",
    }))
    recipients = ["b@example.net", "gone@example.net", "full@example.net"]
    outcome = _deliver(port, recipients=recipients)
    assert outcome.kind == "delivered"
    assert outcome.delivered_to == ["b@example.net"]
    assert [r.recipient for r in outcome.recipients if r.permanent] == ["gone@example.net"]
    assert [(r.recipient, r.code) for r in outcome.recipients] == [
        ("b@example.net", 250), ("gone@example.net", 550), ("full@example.net", 452)]
    assert handler.received[0].rcpt_tos == ["b@example.net"]


def test_given_every_recipient_refused_for_good_then_failed(next_hop):
    handler, port = next_hop(Handler(rcpt_replies={"b@example.net": "550 5.1.1 no such user"}))
    outcome = _deliver(port)
    assert (outcome.kind, outcome.reply) == ("failed", "550 5.1.1 no such user")
    assert handler.received == []


def test_given_refusals_some_temporary_then_deferred_for_those(next_hop):
    _, port = next_hop(Handler(rcpt_replies={"b@example.net": "550 5.1.1 no such user",
                                             "c@example.net": "450 4.2.1 try later"}))
    recipients = ["b@example.net", "c@example.net"]
    outcome = _deliver(port, recipients=recipients)
    assert (outcome.kind, outcome.reply) == ("deferred", "450 4.2.1 try later")
    assert [(r.recipient, r.permanent) for r in outcome.recipients] == [
        ("b@example.net", True), ("c@example.net", False)]


@pytest.mark.parametrize(("reply", "kind"), [("451 4.3.0 busy", "deferred"),
                                             ("553 5.7.1 sender refused", "failed")])
def test_given_the_sender_refused_then_classified_by_code(next_hop, reply, kind):
    _, port = next_hop(Handler(mail_reply=reply))
    outcome = _deliver(port)
    assert (outcome.kind, outcome.reply) == (kind, reply)


# -- the connection -----------------------------------------------------------------------------


def test_given_no_server_then_deferred():
    outcome = _deliver(_free_port())
    assert outcome.kind == "deferred"
    assert outcome.code is None
    assert "connection refused" in outcome.reply


def _raw_server(script: Callable[[socket.socket], None]) -> tuple[int, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            connection, _ = listener.accept()
            with connection:
                script(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return int(listener.getsockname()[1]), thread


def test_given_a_server_that_never_greets_then_deferred_after_the_timeout():
    done = threading.Event()
    port, thread = _raw_server(lambda connection: done.wait(10))
    outcome = _deliver(port, timeout_s=0.5)
    done.set()
    thread.join(5)
    assert outcome.kind == "deferred"
    assert "timed out" in outcome.reply


def test_given_a_5xx_greeting_then_deferred():
    port, thread = _raw_server(lambda c: (c.sendall(b"554 5.3.2 not now\r\n"), c.recv(100)))
    outcome = _deliver(port)
    thread.join(5)
    assert (outcome.kind, outcome.code) == ("deferred", 554)
    assert "not now" in outcome.reply


def test_given_a_reset_mid_session_then_deferred():
    def script(connection: socket.socket) -> None:
        connection.sendall(b"220 hi\r\n")
        connection.recv(1000)
        # Linger on, 0 s: closing sends a TCP reset instead of a FIN.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    port, thread = _raw_server(script)
    outcome = _deliver(port)
    thread.join(5)
    assert outcome.kind == "deferred"
    assert "reset" in outcome.reply.lower() or "connection lost" in outcome.reply


def test_given_the_connection_drops_after_the_final_dot_then_deferred(next_hop):
    handler, port = next_hop(Handler(drop_after_data=True))
    outcome = _deliver(port)
    assert outcome.kind == "deferred"
    assert "connection" in outcome.reply.lower()
    assert len(handler.received) == 1  # it may have been delivered: the caller de-duplicates


@pytest.mark.parametrize(("data", "which"), [
    (b"Subject: x\r\n\r\nbare\nLF\r\n", "bare LF"),
    (b"Subject: x\r\n\r\nbare\rCR\r\n", "bare CR"),
    (b"Subject: x\r\n\r\nsmuggle\r\n.\r\rMAIL FROM:<x@y>\r\n", "bare CR"),
])
def test_given_bare_cr_or_lf_in_the_data_then_failed_before_connecting(data, which):
    outcome = _deliver(_free_port(), data=data)  # nothing listens: a connection would defer
    assert outcome.kind == "failed"
    assert which in outcome.reply


@pytest.mark.parametrize("recipient", ["b@example.net>\r\nRCPT TO:<evil@x>", "b@x\nRCPT", "<b@x>"])
def test_given_an_address_with_line_breaks_then_failed_before_connecting(recipient):
    outcome = _deliver(_free_port(), recipients=[recipient])
    assert outcome.kind == "failed"
    assert "not a usable address" in outcome.reply


# -- STARTTLS -----------------------------------------------------------------------------------


def test_given_level_encrypt_and_a_self_signed_cert_then_delivered_encrypted(
        next_hop, server_tls):
    handler, port = next_hop(tls_context=server_tls, require_starttls=True)
    outcome = _deliver(port, tls=next_hop_tls("encrypt"))
    assert outcome.kind == "delivered"
    assert outcome.tls
    assert handler.received[0].tls
    assert handler.received[0].data == MESSAGE


def test_given_opportunistic_tls_and_an_offer_then_it_is_used(next_hop, server_tls):
    handler, port = next_hop(tls_context=server_tls)
    outcome = _deliver(port)
    assert (outcome.kind, outcome.tls, handler.received[0].tls) == ("delivered", True, True)


def test_given_level_none_then_plain_text_even_when_offered(next_hop, server_tls):
    handler, port = next_hop(tls_context=server_tls)
    outcome = _deliver(port, tls=next_hop_tls("none"))
    assert (outcome.kind, outcome.tls, handler.received[0].tls) == ("delivered", False, False)


def test_given_level_encrypt_and_not_offered_then_deferred(next_hop):
    handler, port = next_hop()
    outcome = _deliver(port, tls=next_hop_tls("encrypt"))
    assert outcome.kind == "deferred"
    assert "STARTTLS was not offered" in outcome.reply
    assert handler.received == []


# -- the retry policy (pure) --------------------------------------------------------------------

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.mark.parametrize(("attempt", "delay_s"), [
    (1, 30), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (9, 3600), (500, 3600)])
def test_next_retry_backs_off_exponentially_up_to_an_hour(attempt, delay_s):
    now = T0 + dt.timedelta(minutes=5)
    assert next_retry(attempt, T0, now, DAY) == now + dt.timedelta(seconds=delay_s)


def test_next_retry_lands_on_the_deadline_then_gives_up():
    deadline = T0 + DAY
    assert next_retry(9, T0, deadline - dt.timedelta(minutes=10), DAY) == deadline
    assert next_retry(10, T0, deadline, DAY) is None
    assert next_retry(10, T0, deadline + dt.timedelta(seconds=1), DAY) is None


def test_next_retry_refuses_attempt_zero():
    with pytest.raises(ValueError, match="attempt"):
        next_retry(0, T0, T0, DAY)
