"""Postfix's XFORWARD (http://www.postfix.org/XFORWARD_README.html), pure: the command's syntax,
xtext, [UNAVAILABLE]/[TEMPUNAVAIL], attributes sent over several commands, and which client a
message then has."""

from __future__ import annotations

import re

import pytest

from katagate.ingest.settings import IngestSettings
from katagate.ingest.trace import protocol
from katagate.ingest.xforward import (
    EHLO_LINE,
    Client,
    Forwarded,
    XForwardError,
    client_of,
    parse,
    update,
    xtext_decode,
)


def test_the_ehlo_keyword_names_the_attributes_taken():
    assert EHLO_LINE == "250-XFORWARD NAME ADDR PROTO HELO SOURCE"


def test_attributes_as_postfix_sends_them_are_read_case_insensitively():
    # Given the two commands Postfix's smtp client sends before MAIL
    first = parse("NAME=mail.example.org ADDR=192.0.2.7")
    second = parse("proto=ESMTP helo=mx.example.org source=remote")
    # When they are applied one after the other
    forwarded = update(update(None, first), second)
    # Then the message's client is the one they name
    assert forwarded == Forwarded(name="mail.example.org", addr="192.0.2.7", proto="ESMTP",
                                  helo="mx.example.org", source="REMOTE")


def test_an_ipv6_address_is_read_with_or_without_postfix_s_ipv6_prefix():
    assert parse("ADDR=IPV6:2001:db8::7") == {"ADDR": "2001:db8::7"}
    assert parse("ADDR=2001:DB8::7") == {"ADDR": "2001:db8::7"}
    assert parse("ADDR=::ffff:192.0.2.7") == {"ADDR": "192.0.2.7"}


def test_unavailable_and_temporarily_unavailable_values_are_unknown():
    assert parse("NAME=[UNAVAILABLE] ADDR=[TEMPUNAVAIL] HELO=[unavailable]") == {
        "NAME": None, "ADDR": None, "HELO": None}


def test_xtext_is_decoded():
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"
    assert parse("HELO=[192.0.2.7]") == {"HELO": "[192.0.2.7]"}
    assert parse("NAME=+5BUNAVAILABLE+5D") == {"NAME": None}


@pytest.mark.parametrize(("value", "why"), [
    ("a+2b", "'+' must be followed by two upper-case hex digits"),
    ("a+", "'+' must be followed"),
    ("a+ZZ", "'+' must be followed"),
    ("a\x01b", "not xtext"),
    ("é", "not xtext"),
])
def test_bad_xtext_is_refused(value, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        xtext_decode(value)


@pytest.mark.parametrize(("arg", "reply"), [
    (None, "501 5.5.4 Syntax: XFORWARD attribute=value..."),
    ("", "501 5.5.4 Syntax: XFORWARD attribute=value..."),
    ("NAME", "501 5.5.4 Error: attribute=value expected, not 'NAME'"),
    ("NAME=", "501 5.5.4 Error: attribute=value expected, not 'NAME='"),
    ("PORT=25", "501 5.5.4 Bad XFORWARD attribute name: PORT"),
    ("ADDR=mx.example.org", "501 5.5.4 Bad XFORWARD ADDR value: ADDR is not an IP address: "
                            "'mx.example.org'"),
    ("PROTO=E+20SMTP", "501 5.5.4 Bad XFORWARD PROTO value: bad PROTO syntax: 'E SMTP'"),
    ("PROTO=" + "E" * 65, "501 5.5.4 Bad XFORWARD PROTO value: bad PROTO syntax: '"
                          + "E" * 65 + "'"),
    ("SOURCE=ELSEWHERE", "501 5.5.4 Bad XFORWARD SOURCE value: SOURCE is LOCAL or REMOTE, "
                         "not 'ELSEWHERE'"),
    ("HELO=a+0D+0AX-Injected:+20yes", "501 5.5.4 Bad XFORWARD HELO value: HELO holds a space, "
                                      "control or non-ASCII character"),
    ("NAME=" + "a" * 256, "501 5.5.4 Bad XFORWARD NAME value: NAME value over 255 characters"),
    # Python reads what follows '%' as an IPv6 zone index, whatever it holds (CR LF too).
    ("ADDR=IPV6:fe80::1%+0D+0AX-Injected:+20yes", "501 5.5.4 Bad XFORWARD ADDR value: ADDR has "
     "a zone index: 'IPV6:fe80::1%\\r\\nX-Injected: yes'"),
    ("ADDR=fe80::1%eth0", "501 5.5.4 Bad XFORWARD ADDR value: ADDR has a zone index: "
                          "'fe80::1%eth0'"),
])
def test_a_bad_command_is_refused_naming_what_is_wrong(arg, reply):
    with pytest.raises(XForwardError) as refused:
        parse(arg)
    assert str(refused.value.reply) == reply


def test_without_xforward_the_client_is_the_peer_as_seen():
    assert client_of(None, peer="192.0.2.1", helo="mx.example.org", rdns="mx.example.org") == \
        Client("192.0.2.1", "mx.example.org", "mx.example.org")


def test_with_xforward_what_was_not_named_is_unknown_and_never_the_upstream_mta_s():
    # Given XFORWARD named only the address
    forwarded = update(None, parse("ADDR=198.51.100.7"))
    # Then the name and HELO are unknown, not those of the Postfix that sent it on
    client = client_of(forwarded, peer="127.0.0.1", helo="postfix.example.net",
                       rdns="localhost")
    assert client == Client("198.51.100.7", None, "", None)


def test_an_unavailable_address_leaves_the_upstream_mta_s_own():
    forwarded = update(None, parse("NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] SOURCE=LOCAL"))
    assert client_of(forwarded, peer="127.0.0.1", helo="pf", rdns=None).ip == "127.0.0.1"


def test_a_forwarded_protocol_names_the_received_field_s_with_clause():
    assert protocol(True, False, "ESMTPSA") == "ESMTPSA"
    assert protocol(True, True, None) == "ESMTPS"


def test_xforward_hosts_are_networks_and_empty_by_default():
    assert IngestSettings().xforward_hosts == []
    with pytest.raises(ValueError, match="xforward_hosts"):
        IngestSettings(xforward_hosts=["postfix.example.net"])
