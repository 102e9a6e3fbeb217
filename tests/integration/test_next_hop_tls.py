"""TLS to the next hop at each security level, on real sockets: three next hops offering
STARTTLS (a certificate from our test CA for the right name, a self-signed one, one from the CA
for another name), one offering no STARTTLS and one refusing it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from katagate.decider.next_hop_tls import NextHopTls, next_hop_tls
from katagate.decider.smtp_out import DeliveryOutcome, SessionCache, deliver
from tests.integration.tls_next_hop import Seen, TlsNextHop, issue

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: tls\r\n\r\nbody\r\n"
# OpenSSL 3 says "self-signed certificate", 1.1 "self signed certificate".
SELF_SIGNED = re.compile(r"self.signed certificate")


@dataclass(frozen=True)
class Hops:
    ca_file: Path
    valid: int  # the CA's certificate for mx.test and 127.0.0.1
    self_signed: int  # for mx.test and 127.0.0.1, signed by its own key
    wrong_name: int  # the CA's certificate for other.test only
    plain: int  # no STARTTLS offered
    refusing: int  # STARTTLS offered, answered 454
    seen: dict[str, Seen]


@pytest.fixture(scope="module")
def hops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hops]:
    folder = tmp_path_factory.mktemp("next-hop-tls")
    ca = issue("katagate test CA", ca=True)
    (folder / "ca.pem").write_bytes(ca.pem())
    contexts = {
        "valid": issue("mx.test", names=("mx.test", "127.0.0.1"), issuer=ca),
        "self_signed": issue("mx.test", names=("mx.test", "127.0.0.1")),
        "wrong_name": issue("other.test", names=("other.test",), issuer=ca),
    }
    servers = {name: TlsNextHop(issued.server_context(folder, name))
               for name, issued in contexts.items()}
    servers["plain"] = TlsNextHop(None)
    servers["refusing"] = TlsNextHop(contexts["valid"].server_context(folder, "refusing"),
                                     refuse=True)
    for server in servers.values():
        server.__enter__()
    try:
        yield Hops(folder / "ca.pem", **{name: s.port for name, s in servers.items()},
                   seen={name: s.seen for name, s in servers.items()})
    finally:
        for server in servers.values():
            server.__exit__()


def _deliver(port: int, tls: NextHopTls, **overrides: Any) -> DeliveryOutcome:
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "envelope_from": "a@example.org",
        "recipients": ["b@example.net"], "data": MESSAGE, "helo": "gw.example.org",
        "timeout_s": 5.0, "tls": tls}
    return deliver(**(values | overrides))


def _nothing_sent(seen: Seen, before: tuple[int, int]) -> bool:
    """No MAIL command reached the next hop since `before`: not in clear, not at all."""
    return (len(seen.mail), len(seen.messages)) == before


def _counts(seen: Seen) -> tuple[int, int]:
    return len(seen.mail), len(seen.messages)


# -- verify -------------------------------------------------------------------------------------


def test_given_verify_and_the_cas_certificate_for_the_name_then_delivered_encrypted(hops):
    # Given level verify trusting our CA, checking the name mx.test
    tls = next_hop_tls("verify", hops.ca_file, "mx.test")
    # When delivering to the next hop whose certificate the CA issued for mx.test
    outcome = _deliver(hops.valid, tls)
    # Then it is delivered, over TLS
    assert (outcome.kind, outcome.tls) == ("delivered", True)
    assert hops.seen["valid"].messages[-1] == (MESSAGE, True)


def test_given_verify_and_no_name_then_the_ip_address_is_checked_against_the_certificate(hops):
    # Given level verify and no name: the host, 127.0.0.1, is what the certificate must hold
    outcome = _deliver(hops.valid, next_hop_tls("verify", hops.ca_file))
    assert (outcome.kind, outcome.tls) == ("delivered", True)
    # And a certificate without that address is refused
    before = _counts(hops.seen["wrong_name"])
    refused = _deliver(hops.wrong_name, next_hop_tls("verify", hops.ca_file))
    assert refused.kind == "deferred"
    assert "IP address mismatch" in refused.reply
    assert _nothing_sent(hops.seen["wrong_name"], before)


def test_given_verify_without_a_ca_file_then_the_system_store_decides(hops):
    # Given level verify with the system's store, which does not hold our test CA
    before = _counts(hops.seen["valid"])
    outcome = _deliver(hops.valid, next_hop_tls("verify", None, "mx.test"))
    # Then the CA's certificate is not trusted: deferred, nothing sent
    assert outcome.kind == "deferred"
    assert "unable to get local issuer certificate" in outcome.reply
    assert _nothing_sent(hops.seen["valid"], before)


def test_given_verify_and_a_self_signed_certificate_then_deferred_with_the_tls_error(hops):
    before = _counts(hops.seen["self_signed"])
    outcome = _deliver(hops.self_signed, next_hop_tls("verify", hops.ca_file, "mx.test"))
    # Then deferred (retried later), the verification error as the reason, nothing sent
    assert (outcome.kind, outcome.code, outcome.tls) == ("deferred", None, False)
    assert outcome.reply.startswith(
        f"TLS certificate of 127.0.0.1:{hops.self_signed} not verified: ")
    assert SELF_SIGNED.search(outcome.reply), outcome.reply
    assert _nothing_sent(hops.seen["self_signed"], before)


def test_given_verify_and_a_certificate_for_another_name_then_deferred_with_the_name_error(hops):
    before = _counts(hops.seen["wrong_name"])
    outcome = _deliver(hops.wrong_name, next_hop_tls("verify", hops.ca_file, "mx.test"))
    assert outcome.kind == "deferred"
    assert "Hostname mismatch, certificate is not valid for 'mx.test'" in outcome.reply
    assert _nothing_sent(hops.seen["wrong_name"], before)


# -- encrypt and may: encryption without authentication -----------------------------------------


@pytest.mark.parametrize("level", ["encrypt", "may"])
def test_given_encrypt_or_may_and_a_self_signed_certificate_then_delivered_encrypted(
        hops, level):
    outcome = _deliver(hops.self_signed, next_hop_tls(level))
    assert (outcome.kind, outcome.tls) == ("delivered", True)
    assert hops.seen["self_signed"].messages[-1] == (MESSAGE, True)


# -- no STARTTLS offered ------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["encrypt", "verify"])
def test_given_tls_required_and_no_starttls_offered_then_deferred_nothing_sent_in_clear(
        hops, level):
    before = _counts(hops.seen["plain"])
    outcome = _deliver(hops.plain, next_hop_tls(level))
    assert outcome.kind == "deferred"
    assert outcome.reply == (f"TLS is required ({level}), but STARTTLS was not offered by "
                             f"127.0.0.1:{hops.plain}")
    assert _nothing_sent(hops.seen["plain"], before)


def test_given_may_and_no_starttls_offered_then_delivered_in_plain_text(hops):
    outcome = _deliver(hops.plain, next_hop_tls("may"))
    assert (outcome.kind, outcome.tls) == ("delivered", False)
    assert hops.seen["plain"].messages[-1] == (MESSAGE, False)


@pytest.mark.parametrize("level", ["encrypt", "verify"])
def test_given_tls_required_and_starttls_refused_then_deferred_nothing_sent_in_clear(
        hops, level):
    before = _counts(hops.seen["refusing"])
    outcome = _deliver(hops.refusing, next_hop_tls(level, hops.ca_file, "mx.test"))
    assert (outcome.kind, outcome.code, outcome.tls) == ("deferred", 454, False)
    assert outcome.reply == "454 4.7.0 TLS not available due to temporary reason"
    assert _nothing_sent(hops.seen["refusing"], before)


def test_given_may_and_starttls_refused_then_delivered_in_plain_text(hops):
    outcome = _deliver(hops.refusing, next_hop_tls("may"))
    assert (outcome.kind, outcome.tls) == ("delivered", False)
    assert hops.seen["refusing"].messages[-1] == (MESSAGE, False)


# -- the connection cache -----------------------------------------------------------------------


def test_given_a_kept_plain_connection_then_a_delivery_requiring_tls_does_not_reuse_it(hops):
    # Given a connection kept after a delivery at level may (plain text: no STARTTLS offered)
    cache = SessionCache()
    assert _deliver(hops.plain, next_hop_tls("may"), cache=cache).kind == "delivered"
    assert len(cache) == 1
    before = _counts(hops.seen["plain"])
    # When the next delivery to the same next hop requires TLS
    outcome = _deliver(hops.plain, next_hop_tls("encrypt"), cache=cache)
    # Then it opens its own connection, finds no STARTTLS, and defers
    assert (outcome.kind, cache.reused) == ("deferred", 0)
    assert _nothing_sent(hops.seen["plain"], before)
    cache.close()
