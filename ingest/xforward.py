"""Postfix's XFORWARD (http://www.postfix.org/XFORWARD_README.html), pure: a trusted upstream
MTA (Postfix with `smtp_send_xforward_command = yes`, before katagate as its content_filter)
names the client it received the message from, so that events, our Received field and the mail
log show the original client rather than the Postfix that hands the message on. Relaying is not
decided on it (ingest/handler.py): trusting an MTA's word on who its client was is not letting
whatever runs on its host relay by naming a client in relay_networks; as in Postfix, where
XFORWARD is for logging.

    xforward-command = XFORWARD 1*( SP attribute-name"="attribute-value )
    attribute-name   = ( NAME | ADDR | PROTO | HELO | SOURCE )   ; case-insensitive
    attribute-value  = xtext (RFC 1891), or [UNAVAILABLE] / [TEMPUNAVAIL]

Attributes arrive in one command or several (Postfix sends NAME ADDR, then PROTO HELO SOURCE)
and apply to the next mail transaction: they are kept on the envelope, so the end of DATA,
RSET and EHLO forget them, as Postfix's smtpd does. Once any is given, those not given (or
unavailable) are unknown, never the upstream MTA's own: Postfix's smtpd_xforward_preset.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from katagate.ingest import replies
from katagate.ingest.replies import Reply
from katagate.schemas.errors import KatagateError

ATTRIBUTES = ("NAME", "ADDR", "PROTO", "HELO", "SOURCE")
# The EHLO keyword: the attributes we take, in the order the spec lists them.
EHLO_LINE = "250-XFORWARD " + " ".join(ATTRIBUTES)
UNAVAILABLE = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
# Postfix refuses a value over 255 characters and a PROTO over 64.
MAX_VALUE = 255
MAX_PROTO = 64
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
_PROTO = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
_SOURCES = ("LOCAL", "REMOTE")


@dataclass(frozen=True)
class Forwarded:
    """The upstream client as XFORWARD named it; None: not given or unavailable (unknown)."""

    name: str | None = None
    addr: str | None = None  # an IP address, IPv4-mapped IPv6 reduced to IPv4
    proto: str | None = None  # upper case, an atom: the Received field's `with`
    helo: str | None = None
    source: str | None = None  # LOCAL or REMOTE


def xtext_decode(value: str) -> str:
    """RFC 1891 xtext: `+XX` (upper-case hex) is the octet XX; every other character is
    itself, printable ASCII other than `+` and `=`."""
    if any(not 0x21 <= ord(c) <= 0x7E or c == "=" for c in value):
        raise ValueError("not xtext: a control, space, '=' or non-ASCII character")
    if value.count("+") != len(_XTEXT_HEX.findall(value)):
        raise ValueError("not xtext: '+' must be followed by two upper-case hex digits")
    return _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value)


def _address(value: str) -> str:
    # Postfix writes an IPv6 client as `IPV6:2001:db8::1` (its smtp client does as its
    # Received fields do); the prefix is optional and case-insensitive.
    text = value[5:] if value[:5].upper() == "IPV6:" else value
    if "%" in text:
        # Python takes any text after '%' as an IPv6 zone index, CR LF included, and keeps it
        # in the address; Postfix never sends one (its valid_hostaddr refuses it).
        raise ValueError(f"ADDR has a zone index: {value!r}")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"ADDR is not an IP address: {value!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _printable(name: str, value: str) -> str:
    if any(not 0x21 <= ord(c) <= 0x7E for c in value):
        raise ValueError(f"{name} holds a space, control or non-ASCII character")
    return value


def _value(name: str, value: str) -> str:
    if name == "ADDR":
        return _address(value)
    if name == "PROTO":
        if len(value) > MAX_PROTO or not _PROTO.fullmatch(value):
            raise ValueError(f"bad PROTO syntax: {value!r}")
        return value.upper()
    if name == "SOURCE":
        if value.upper() not in _SOURCES:
            raise ValueError(f"SOURCE is LOCAL or REMOTE, not {value!r}")
        return value.upper()
    return _printable(name, value)  # NAME, HELO: host names, not necessarily in the DNS


class XForwardError(KatagateError, ValueError):
    """The command's refusal, as the reply to send."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def parse(arg: str | None) -> dict[str, str | None]:
    """The attributes of one XFORWARD command: name (upper case) to value, None where the value
    is [UNAVAILABLE] or [TEMPUNAVAIL]. Raises XForwardError naming what is wrong."""
    words = (arg or "").split()
    if not words:
        raise XForwardError(replies.XFORWARD_SYNTAX)
    attributes: dict[str, str | None] = {}
    for word in words:
        name, equals, raw = word.partition("=")
        if not equals or not raw:
            raise XForwardError(replies.XFORWARD_SYNTAX.with_text(
                f"Error: attribute=value expected, not {word[:64]!r}"))
        name = name.upper()
        if name not in ATTRIBUTES:
            raise XForwardError(replies.XFORWARD_SYNTAX.with_text(
                f"Bad XFORWARD attribute name: {name[:64]}"))
        try:
            text = xtext_decode(raw)
            if len(text) > MAX_VALUE:
                raise ValueError(f"{name} value over {MAX_VALUE} characters")
            attributes[name] = None if text.upper() in UNAVAILABLE else _value(name, text)
        except ValueError as exc:
            raise XForwardError(replies.XFORWARD_SYNTAX.with_text(
                f"Bad XFORWARD {name} value: {str(exc)[:120]}")) from None
    return attributes


def update(forwarded: Forwarded | None, attributes: dict[str, str | None]) -> Forwarded:
    """The attributes in effect after one more command (a later value replaces an earlier)."""
    return replace(forwarded or Forwarded(),
                   **{name.lower(): value for name, value in attributes.items()})


@dataclass(frozen=True)
class Client:
    """The message's client: the SMTP peer (after a PROXY header), or whom XFORWARD names."""

    ip: str
    name: str | None  # its reverse DNS name; None: unknown
    helo: str  # "": none known
    protocol: str | None = None  # how the upstream MTA received it; None: as we did


def client_of(forwarded: Forwarded | None, *, peer: str, helo: str,
              rdns: str | None) -> Client:
    """With XFORWARD in effect, what it named: an attribute not given or unavailable is unknown
    (never the upstream MTA's own), except the address, which must be one for the events: then
    the upstream MTA's, the only address known to have sent the message."""
    if forwarded is None:
        return Client(peer, rdns, helo)
    return Client(forwarded.addr or peer, forwarded.name, forwarded.helo or "", forwarded.proto)
