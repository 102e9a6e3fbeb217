"""`next_hop_starttls = required` through the whole gateway: the next hop's certificate is
verified; a self-signed one defers the message with the TLS error recorded in its
`delivery.deferred` events, retried on the retry schedule, nothing sent in clear; the next hop
presenting a certificate from the configured CA then gets it."""

from __future__ import annotations

import pytest

from tests.e2e.gateway import Gateway, dump
from tests.integration.kata_harness import wait_for
from tests.integration.tls_next_hop import TlsNextHop, free_port, issue
from tests.trace_field import without_trace

pytestmark = pytest.mark.kafka

MAIL = (b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: over TLS\r\n"
        b"Message-ID: <tls-1@example.org>\r\n\r\nbody\r\n")


def test_given_starttls_required_then_a_self_signed_next_hop_defers_until_a_trusted_one(
        tmp_path, kafka_bootstrap):
    from tests.conftest import ensure_namespace

    # Given the decider with next_hop_starttls = required, trusting our CA, and a next hop
    # whose certificate is self-signed
    ca = issue("katagate test CA", ca=True)
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    port = free_port()
    self_signed = issue("mx.test", names=("mx.test", "127.0.0.1"))
    hop = TlsNextHop(self_signed.server_context(tmp_path, "self-signed"), port=port)
    gateway = Gateway(ensure_namespace(kafka_bootstrap), tmp_path / "gw", decider={
        "next_hop_port": port, "next_hop_starttls": "required",
        "next_hop_tls_ca_file": tmp_path / "ca.pem", "next_hop_tls_name": "mx.test"})
    try:
        with hop:
            # When a clean message is sent
            message_id = gateway.send(MAIL)

            # Then its delivery is deferred and retried, each time with the TLS error
            def deferred_twice() -> list[object] | None:
                found = [e for e in gateway.mail_events(message_id)
                         if e.type == "delivery.deferred"]
                return found if len(found) >= 2 else None
            deferred = wait_for(deferred_twice, 60, "two deferred attempts")
            assert [e.attempt for e in deferred[:2]] == [1, 2]  # type: ignore[attr-defined]
            for event in deferred:
                assert event.reply == (  # type: ignore[attr-defined]
                    f"TLS certificate of 127.0.0.1:{port} not verified: self-signed certificate")
            # And nothing reached the next hop, not even a MAIL command in clear
            assert (hop.seen.mail, hop.seen.messages) == ([], [])

        # When the next hop presents a certificate from the CA for its name
        valid = issue("mx.test", names=("mx.test",), issuer=ca)
        with TlsNextHop(valid.server_context(tmp_path, "valid"), port=port) as trusted:
            events = gateway.wait_terminal(message_id)
            # Then a retry delivers it over TLS, unchanged (behind ingest's Received field)
            assert "delivery.delivered" in [e.type for e in events], dump(events)
            assert [(without_trace(data), tls) for data, tls in trusted.seen.messages] == [
                (MAIL, True)]
    finally:
        gateway.close()
