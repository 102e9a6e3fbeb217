"""Envelope policy: address limits and syntax, the relay decision, the recipient count."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katagate.ingest.envelope import (
    AddressLimits,
    RelayPolicy,
    check_address,
    mailbox_as_written,
    recipient_limit_reached,
    written_mailbox,
)

LIMITS = AddressLimits()


def reply(address: str, *, sender: bool = False) -> str | None:
    refusal = check_address(address, LIMITS, sender=sender)
    return None if refusal is None else str(refusal)


def test_a_64_octet_local_part_is_accepted_and_65_refused_as_path_too_long():
    assert reply("a" * 64 + "@example.org") is None
    refused = reply("a" * 65 + "@example.org")
    assert refused is not None
    assert refused.startswith("501 5.1.3 Path too long: local part is 65 octets, limit 64")
    assert str(check_address("a" * 65 + "@example.org", LIMITS, sender=True)).startswith(
        "501 5.1.7")


def domain_of_length(n: int) -> str:
    labels, left = [], n
    while left > 0:
        size = min(63, left)
        if left - size == 1:  # never leave a lone dot with an empty label
            size -= 1
        labels.append("d" * size)
        left -= size + 1
    domain = ".".join(labels)
    assert len(domain) == n, len(domain)
    return domain


def test_a_255_octet_domain_is_within_the_domain_limit_and_256_is_not():
    limits = AddressLimits(local_part=64, domain=255, path=300)  # the path limit aside
    assert check_address("a@" + domain_of_length(255), limits, sender=False) is None
    refused = check_address("a@" + domain_of_length(256), limits, sender=False)
    assert refused is not None
    assert "domain is 256 octets, limit 255" in str(refused)


def test_the_path_counts_the_angle_brackets():
    at_limit = "a" * 64 + "@" + domain_of_length(254 - 65)
    assert len(at_limit) == 254
    assert reply(at_limit) is None
    over = "a" * 64 + "@" + domain_of_length(255 - 65)
    assert str(reply(over)).startswith("501 5.1.3 Path too long: 257 octets with <>, limit 256")


@pytest.mark.parametrize("bad", ["a\x00b@example.org", "ab@exa\x00mple.org", "a\x7f@example.org",
                                 "a\r@example.org", "a\tb@example.org"])
def test_control_characters_and_nul_are_refused_naming_the_position(bad):
    refused = reply(bad)
    assert refused is not None
    assert refused.startswith("553 5.1.3 Bad recipient address syntax: control character")


def test_the_null_sender_is_allowed_for_mail_from_only():
    assert reply("<>", sender=True) is None
    assert str(reply("<>")).startswith("553 5.1.3")


def test_a_recipient_without_a_domain_is_refused():
    assert str(reply("postmaster")).startswith("553 5.1.3 Recipient address must have a domain")


@pytest.mark.parametrize("bad", ["a@example..org", "a@.example.org", "a@" + "x" * 64 + ".org"])
def test_malformed_domains_are_refused(bad):
    assert str(reply(bad)).startswith("553 5.1.3 Bad recipient address syntax")


RELAY = RelayPolicy(domains=("example.net", "*.example.org"),
                    networks=(ip_network("192.0.2.0/24"), ip_network("2001:db8::/32")))


@pytest.mark.parametrize(("client", "recipient"), [
    ("198.51.100.7", "bob@example.net"),
    ("198.51.100.7", "bob@EXAMPLE.NET"),
    ("198.51.100.7", "bob@mx.example.org"),
    ("192.0.2.99", "bob@anywhere.test"),
    ("::ffff:192.0.2.99", "bob@anywhere.test"),
    ("2001:db8::5", "bob@anywhere.test"),
])
def test_relay_allowed_for_relay_domains_or_from_relay_networks(client, recipient):
    assert RELAY.decide(client, recipient) is None


@pytest.mark.parametrize(("client", "recipient"), [
    ("198.51.100.7", "bob@anywhere.test"),
    ("198.51.100.7", "bob@example.org"),  # *.example.org does not cover example.org
    ("198.51.100.7", "bob@example.net.evil.test"),
    ("2001:db9::5", "bob@anywhere.test"),
    ("not-an-ip", "bob@anywhere.test"),
])
def test_anything_else_is_relaying_denied_with_550_and_the_reason(client, recipient):
    refused = RELAY.decide(client, recipient)
    assert refused is not None
    assert str(refused).startswith("550 5.7.1 Relaying denied: ")
    assert client in refused.text


@pytest.mark.parametrize(("recipient", "routing"), [
    ("user%other.test@example.net", "%"),
    ("other.test!user@example.net", "!"),
    ('"user@other.test"@example.net', "@"),
    ('"user%other.test"@example.net', "%"),  # what aiosmtpd makes of a quoted percent hack
    ('"us\\"er@other.test"@example.net', "@"),
])
@pytest.mark.parametrize("client", ["198.51.100.7", "192.0.2.99"])  # outside, in a relay network
def test_given_sender_specified_routing_to_a_relay_domain_then_relaying_is_denied(
        client, recipient, routing):
    # Given a local part that names another destination (percent hack, bang path, quoted @),
    # when the relay check runs, then 550 5.7.1 names the routing, whoever the client is.
    refused = RELAY.decide(client, recipient)
    assert refused is not None
    assert str(refused) == ("550 5.7.1 Relaying denied: sender-specified routing "
                            f"({routing!r} in the local part)")


def test_given_a_quoted_local_part_without_routing_then_it_is_relayed():
    assert RELAY.decide("198.51.100.7", '"john smith"@example.net') is None


def test_no_relay_configuration_relays_nothing():
    assert RelayPolicy().decide("127.0.0.1", "bob@example.net") is not None


def test_the_recipient_limit():
    assert recipient_limit_reached(["r"] * 99, 100) is None
    assert str(recipient_limit_reached(["r"] * 100, 100)) == "452 4.5.3 Too many recipients"


@given(st.text(max_size=400))
def test_any_address_either_passes_within_every_limit_or_gets_a_5xx(address):
    refused = check_address(address, LIMITS, sender=False)
    if refused is None:
        local, _, domain = address.rpartition("@")
        assert len(local) <= 64
        assert len(domain) <= 255
        assert len(address) <= 254
        assert all(ord(c) >= 0x20 and ord(c) != 0x7F for c in address)
    else:
        assert 500 <= refused.code < 600


@pytest.mark.parametrize(("arg", "parsed"), [
    ("<a@example.org>", "a@example.org"),
    ("<a@example.org> SIZE=100 BODY=8BITMIME", "a@example.org"),
    ("a@example.org", "a@example.org"),  # no brackets: aiosmtpd takes it, so do we
    ("< a@example.org >", "a@example.org"),
    ("<@relay.example:a@example.org>", "a@example.org"),  # a source route, ignored
    ('<"a b"@example.org>', '"a b"@example.org'),
    ('<"a>b"@example.org>', '"a>b"@example.org'),
    ('<"ab"@example.org>', "ab@example.org"),  # needless quotes removed: the same mailbox
    ('<"a\\"b"@example.org>', '"a\\"b"@example.org'),
    ("<a@[192.0.2.1]>", "a@[192.0.2.1]"),
    ("<postmaster>", "postmaster"),
    ("<>", "<>"),  # the null sender, as aiosmtpd hands it over
])
def test_an_address_as_written_is_kept(arg: str, parsed: str) -> None:
    assert mailbox_as_written(arg, parsed)


@pytest.mark.parametrize(("arg", "parsed"), [
    ("<a b@example.org>", '"a b"@example.org'),  # a space the client did not quote
    ("<x(y)@example.org>", "x@example.org"),  # a comment dropped
    ("<a\\b@example.org>", '"a\\\\b"@example.org'),  # a backslash outside quotes
    ('<a"b@example.org>', '"ab@example.org>"'),  # a stray quote swallows the rest
    ('<"a"b@example.org>', "ab@example.org"),  # quotes around part of the local part
])
def test_an_address_aiosmtpd_rewrote_is_not_the_one_written(arg: str, parsed: str) -> None:
    assert not mailbox_as_written(arg, parsed)


def test_the_written_mailbox_stops_at_the_first_bracket_outside_quotes() -> None:
    assert written_mailbox('<"a>b"@example.org> SIZE=5') == '"a>b"@example.org'
    assert written_mailbox("<@a,@b:c@example.org>") == "c@example.org"
    assert written_mailbox("<>") == ""
